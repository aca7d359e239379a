// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/**
 * @title IChannelEscrow
 * @notice Prepaid, unidirectional payment channels for paid HTTP APIs.
 *
 * A payer deposits ERC-20 tokens for one payee. Off chain, the channel's signer (usually an
 * agent's session key) signs EIP-712 vouchers `Voucher(bytes32 channelId,uint128 cumulativeAmount)`
 * with increasing cumulative amounts. The payee (or an operator it approved) collects up to the
 * highest signed amount with {settle} (many channels per transaction) or {close}. The payer gets
 * the unspent rest back with {requestClose} followed, after the channel's close delay, by {withdraw}.
 * A payment or refund whose transfer fails (paused token, blacklisted recipient) is recorded anyway and stays
 * owed to its party, who takes it with {collect}, to an address of its choosing.
 *
 * See docs/protocol.md for the normative description.
 */
interface IChannelEscrow {
    /// @notice The full state of a channel, as returned by {getChannel}.
    /// @dev An unknown channel reads as all zeroes (`payer == address(0)`). A known channel asked for with a
    /// signer that is not its own reads with its record fields (payer, payee, token, closeRequestedAt,
    /// closeDelay) and `signer == address(0)`, `deposit == settled == 0`, `finalized == false`.
    struct Channel {
        address payer; // owns the deposit, receives refunds
        address payee; // receives settled funds
        address token; // ERC-20 held by the channel
        address signer; // key that signs vouchers
        uint128 deposit; // total deposited
        uint128 settled; // cumulative amount already paid to the payee; never decreases
        uint64 closeRequestedAt; // 0 when no close is pending
        uint32 closeDelay; // seconds between requestClose and withdraw
        bool finalized; // sticky: a finalized channel accepts nothing ever again
    }

    /// @notice Names a channel for {getChannels}: its id and its signer (the signer is not stored on its own).
    struct ChannelRef {
        bytes32 channelId;
        address signer;
    }

    /// @notice One channel's claim inside a {settleContractSigned} batch, for a contract signer (ERC-1271).
    struct ContractSignedSettleItem {
        bytes32 channelId;
        uint128 cumulativeAmount;
        uint128 amount;
        address signer;
        bytes signature;
    }

    /// @notice Why a {settle} item was skipped.
    enum SkipReason {
        UnknownChannel, // no channel with that id
        PayeeMismatch, // the channel pays another payee than the batch's
        TokenMismatch, // the channel holds another token than the batch's
        InvalidSignature, // the voucher is not signed by the channel's signer
        Finalized, // the channel was withdrawn or closed
        AmountNotAboveSettled, // `amount <= settled`: nothing new to collect
        AmountAboveVoucher, // `amount > cumulativeAmount`
        AmountAboveDeposit // `amount > deposit`
    }

    // ---------------------------------------------------------------- events

    /// @notice A channel was opened with `deposit` tokens.
    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        address token,
        address signer,
        uint256 deposit,
        uint32 closeDelay
    );
    /// @notice `amount` was added; `deposit` is the new total. Any pending close was cancelled.
    event ChannelToppedUp(bytes32 indexed channelId, uint256 amount, uint256 deposit);
    /// @notice The payer or signer asked to close; {withdraw} is possible from `closesAt`.
    event CloseRequested(bytes32 indexed channelId, uint64 closesAt);
    /// @notice The channel's cumulative settled amount rose to `amount`.
    /// @dev The increase is not logged (it costs 256 gas per channel on the settle path): it is `amount` minus the
    /// previous {Settled} amount of the channel (0 before the first), and a batch's total is its one token transfer.
    event Settled(bytes32 indexed channelId, uint128 amount);
    /// @notice A {settle} item was skipped and the rest of the batch went on.
    event SettleSkipped(bytes32 indexed channelId, SkipReason reason);
    /// @notice The channel was finalized by {withdraw}; `refund` went back to the payer.
    event Withdrawn(bytes32 indexed channelId, uint256 refund);
    /// @notice The channel was finalized cooperatively by {close}: `settled` in total to the payee, `refund` to the payer.
    event Closed(bytes32 indexed channelId, uint256 settled, uint256 refund);
    /// @notice `payee` approved or revoked `operator` as a settlement key.
    event OperatorSet(address indexed payee, address indexed operator, bool approved);
    /// @notice A payout or refund of `amount` to `account` could not be transferred; it is owed until {collect}.
    event PaymentDeferred(address indexed token, address indexed account, uint256 amount);
    /// @notice `account` collected `amount` it was owed, sent to `to`.
    event Collected(address indexed token, address indexed account, address to, uint256 amount);

    // ---------------------------------------------------------------- errors

    /// @notice A deposit or top-up of zero.
    error ZeroAmount();
    /// @notice The payee is the zero address or the escrow itself.
    error InvalidPayee(address payee);
    /// @notice {openWithAuthorization} for the zero address.
    error InvalidPayer(address payer);
    /// @notice The token is the zero address or the escrow itself.
    error InvalidToken(address token);
    /// @notice The close delay is outside `[min, max]`.
    error CloseDelayOutOfRange(uint256 closeDelay, uint256 min, uint256 max);
    /// @notice A channel with this id exists (or existed: ids are never reused).
    error ChannelExists(bytes32 channelId);
    /// @notice No channel with this id.
    error UnknownChannel(bytes32 channelId);
    /// @notice The channel exists but `signer` is not its signer (nothing was read or written for it).
    error SignerMismatch(bytes32 channelId, address signer);
    /// @notice The channel was finalized and accepts nothing.
    error ChannelFinalized(bytes32 channelId);
    /// @notice The deposit would exceed the largest amount a channel can hold.
    error DepositTooLarge(uint256 deposit, uint256 max);
    /// @notice The escrow received another amount than it pulled (fee-on-transfer or rebasing token).
    error TransferAmountMismatch(address token, uint256 expected, uint256 received);
    /// @notice Only the channel's payer may do this.
    error NotPayer(bytes32 channelId, address caller);
    /// @notice Only the channel's payer or signer may do this.
    error NotPayerOrSigner(bytes32 channelId, address caller);
    /// @notice Only the payee or an operator it approved may do this.
    error NotPayeeOrOperator(address payee, address caller);
    /// @notice A close is already pending.
    error CloseAlreadyRequested(bytes32 channelId, uint256 closesAt);
    /// @notice {withdraw} needs a close request first.
    error CloseNotRequested(bytes32 channelId);
    /// @notice {withdraw} before the close delay has elapsed.
    error CloseDelayNotElapsed(bytes32 channelId, uint256 closesAt, uint256 timestamp);
    /// @notice The voucher is not signed by the channel's signer.
    error InvalidSignature(bytes32 channelId);
    /// @notice The claimed amount is above the voucher's cumulative amount.
    error AmountAboveVoucher(bytes32 channelId, uint256 amount, uint256 cumulativeAmount);
    /// @notice The claimed amount is above the channel's deposit.
    error AmountAboveDeposit(bytes32 channelId, uint256 amount, uint256 deposit);
    /// @notice {settle} with no items.
    error EmptyBatch();
    /// @notice {settle} items whose length is zero or not a multiple of 128 bytes.
    error MalformedSettleItems(uint256 length);
    /// @notice An operator's {close} that refunds the payer needs the payer's consent: a pending close request on
    /// chain, or a `CloseRequest(channelId)` signed by the channel's signer or payer.
    error CloseNotConsented(bytes32 channelId, address caller);
    /// @notice A payout or refund transfer ran out of gas (the call is reverted rather than the payment deferred).
    error TransferOutOfGas(address token, address to);
    /// @notice {collect} with nothing owed.
    error NothingOwed(address token, address account);
    /// @notice {collect} to the zero address or the escrow itself.
    error InvalidRecipient(address to);

    // ---------------------------------------------------------------- payer

    /**
     * @notice Opens a channel, pulling `amount` of `token` from the caller (allowance needed).
     * @param signer key that signs vouchers; `address(0)` means the payer itself
     * @param closeDelay seconds between {requestClose} and {withdraw}, 15 minutes to 30 days
     * @param salt any value; makes the id unique among channels with the same parties
     * @return channelId {computeChannelId} of the arguments, with the caller as payer
     */
    function open(address payee, address token, address signer, uint128 amount, uint32 closeDelay, bytes32 salt)
        external
        returns (bytes32 channelId);

    /// @notice {open} after an EIP-2612 permit; a permit that fails (e.g. already used by a front-runner) is ignored
    /// and the allowance it would have set is relied on.
    function openWithPermit(
        address payee,
        address token,
        address signer,
        uint128 amount,
        uint32 closeDelay,
        bytes32 salt,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (bytes32 channelId);

    /**
     * @notice Opens a channel for `payer` with an EIP-3009 `receiveWithAuthorization` signed by the payer,
     * submitted by anyone (typically the provider), so the payer needs no native gas.
     * @dev The authorization's nonce must be {authorizationNonce}`(channelId, closeDelay)`, so it opens this exact
     * channel with this close delay and nothing else (amount and validity are covered by the token's signature).
     */
    function openWithAuthorization(
        address payer,
        address payee,
        address token,
        address signer,
        uint128 amount,
        uint32 closeDelay,
        bytes32 salt,
        uint256 validAfter,
        uint256 validBefore,
        bytes calldata signature
    ) external returns (bytes32 channelId);

    // Every function after `open` names a channel by `(channelId, signer)`: the signer is not stored on its own,
    // it is part of the key of the channel's balance slot. An unknown id reverts {UnknownChannel}; a known id
    // with another signer reverts {SignerMismatch} (the signer is in {ChannelOpened}).

    /// @notice Adds `amount` to the deposit (payer only); cancels a pending close.
    function topUp(bytes32 channelId, address signer, uint128 amount) external;

    /// @notice Starts the close delay (payer or signer).
    function requestClose(bytes32 channelId, address signer) external;

    /// @notice After the close delay, refunds `deposit - settled` to the payer and finalizes (anyone may call).
    function withdraw(bytes32 channelId, address signer) external;

    // ---------------------------------------------------------------- payee

    /**
     * @notice Settles many channels of one payee and token in one call (payee or operator), for vouchers signed
     * by ECDSA keys (the usual session keys).
     * @dev `items` is packed (compact calldata: the settle path is where gas matters), 128 bytes per channel:
     * `channelId (32) ‖ cumulativeAmount (uint128, 16) ‖ amount (uint128, 16) ‖ r (32) ‖ vs (32)`, where
     * `amount` is the new cumulative settled amount to claim (`settled < amount <= min(cumulativeAmount, deposit)`)
     * and `(r, vs)` is the voucher signature in EIP-2098 compact form (s low, y-parity in the top bit of vs).
     * Items that fail a check are skipped with {SettleSkipped}; the batch never reverts because of one item.
     * The payee receives one aggregated transfer; if it fails, the claims stay settled and the total is owed to the
     * payee ({PaymentDeferred}, then {collect}).
     * @return total the amount transferred to the payee
     */
    function settle(address payee, address token, bytes calldata items) external returns (uint256 total);

    /**
     * @notice {settle} for channels whose signer is a contract (ERC-1271). Each `isValidSignature` call gets a
     * bounded amount of gas, so a hostile signer contract fails only its own item.
     */
    function settleContractSigned(address payee, address token, ContractSignedSettleItem[] calldata items)
        external
        returns (uint256 total);

    /**
     * @notice Cooperative close (payee or operator): settles up to `amount` with the voucher when it is above
     * `settled`, refunds the rest to the payer at once, and finalizes. `signature` is checked against `signer`
     * (ECDSA, else ERC-1271), which must be the channel's signer ({SignerMismatch}).
     * @dev The payee may always close (it may waive its own money). An operator's close that refunds anything needs
     * the payer's consent ({CloseNotConsented}): a close pending on chain, or `closeRequestSignature`, a
     * `CloseRequest(channelId)` ({closeRequestDigest}) signed by the channel's signer or payer (ECDSA, else
     * ERC-1271); it is ignored otherwise and may be empty. A failed transfer leaves that party's money owed.
     */
    function close(
        bytes32 channelId,
        address signer,
        uint128 cumulativeAmount,
        uint128 amount,
        bytes calldata signature,
        bytes calldata closeRequestSignature
    ) external;

    /**
     * @notice Sends `to` everything the escrow owes the caller in `token` (payouts and refunds whose transfer failed).
     * @return amount what was sent
     */
    function collect(address token, address to) external returns (uint256 amount);

    /// @notice Lets `operator` settle and close for the caller (a payee); funds always go to the payee. An operator
    /// cannot waive: its {close} refunds only with the payer's consent.
    function setOperator(address operator, bool approved) external;

    // ---------------------------------------------------------------- views

    /// @notice The channel `channelId` whose signer is `signer`. All zeroes when the id is unknown; when the id is
    /// known but `signer` is not its signer: the record fields with `signer == address(0)` and deposit, settled
    /// and finalized zero (see {Channel}). So `payer == 0` means unknown, `payer != 0 && signer == 0` wrong signer.
    function getChannel(bytes32 channelId, address signer) external view returns (Channel memory);

    /// @notice {getChannel} for many channels, in the order asked.
    function getChannels(ChannelRef[] calldata refs) external view returns (Channel[] memory);

    /// @notice `keccak256(abi.encode(block.chainid, address(this), payer, payee, token, signer, salt))`,
    /// with `signer` replaced by `payer` when zero.
    function computeChannelId(address payer, address payee, address token, address signer, bytes32 salt)
        external
        view
        returns (bytes32);

    /// @notice The EIP-3009 nonce {openWithAuthorization} requires: `keccak256(abi.encode(channelId, closeDelay))`.
    function authorizationNonce(bytes32 channelId, uint32 closeDelay) external pure returns (bytes32);

    /// @notice The EIP-712 digest of `Voucher(channelId, cumulativeAmount)` under this escrow's domain.
    function voucherDigest(bytes32 channelId, uint128 cumulativeAmount) external view returns (bytes32);

    /// @notice Whether `operator` may settle and close for `payee`.
    function isOperator(address payee, address operator) external view returns (bool);

    /// @notice What the escrow owes `account` in `token` (failed payouts and refunds), to be taken with {collect}.
    function owed(address token, address account) external view returns (uint256);

    /// @notice The EIP-712 digest of `CloseRequest(channelId)` under this escrow's domain.
    function closeRequestDigest(bytes32 channelId) external view returns (bytes32);
}
