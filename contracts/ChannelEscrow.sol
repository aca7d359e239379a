// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IChannelEscrow} from "./interfaces/IChannelEscrow.sol";
import {IERC3009} from "./interfaces/IERC3009.sol";

/**
 * @title ChannelEscrow
 * @notice Holds every channel's deposit; see {IChannelEscrow} and docs/protocol.md.
 *
 * Storage layout (why): the settle path must touch one storage slot per channel. A channel's money lives in
 * one storage slot, numbered `key = keccak256(channelId, payee, token, signer)`. {settle} recovers the
 * signer from the voucher and derives the key from the batch's payee and token, so a wrong signer, payee or
 * token lands on an empty slot: the one read both finds the amounts and proves the channel's parties.
 * The rest of the channel (payer, close state and an index of the payee/token pair) lives in a one-slot
 * record read by the other functions and the views; `open` thus writes two new slots.
 *
 * The signer is stored nowhere but in the balance slot's key: every function after `open` and every view
 * names a channel by `(channelId, signer)`, and a signer that is not the channel's lands on an empty balance
 * slot while the record exists ({SignerMismatch}; never written). Whoever acts on a channel knows its signer:
 * the client (its session key), the payee (it recovers it from every voucher) and anyone else
 * ({ChannelOpened} carries it). This saves one new storage slot (22,100 gas) per channel at `open`.
 */
contract ChannelEscrow is IChannelEscrow, EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice `keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)")`.
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)");
    /// @notice `keccak256("CloseRequest(bytes32 channelId)")`: the payer's consent to an operator's {close}.
    bytes32 public constant CLOSE_REQUEST_TYPEHASH = keccak256("CloseRequest(bytes32 channelId)");
    /// @notice Shortest allowed close delay.
    uint32 public constant MIN_CLOSE_DELAY = 15 minutes;
    /// @notice Longest allowed close delay.
    uint32 public constant MAX_CLOSE_DELAY = 30 days;
    /// @notice Largest deposit one channel can hold (amounts are packed in 96 bits; 7.9e28 atomic units).
    uint256 public constant MAX_DEPOSIT = type(uint96).max;
    /// @dev Gas given to an ERC-1271 signer's `isValidSignature` during settlement, so that a hostile
    /// signer contract can make only its own item fail, never the batch.
    uint256 internal constant ERC1271_GAS = 50_000;
    /// @dev Largest valid `s` of a low-s ECDSA signature (secp256k1n / 2).
    uint256 internal constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @notice Bytes per {settle} item: channelId (32) ‖ cumulativeAmount (16) ‖ amount (16) ‖ r (32) ‖ vs (32).
    uint256 public constant SETTLE_ITEM_SIZE = 128;

    uint256 private constant _AMOUNT_MASK = (1 << 96) - 1;
    uint256 private constant _SETTLED_SHIFT = 96;
    uint256 private constant _FINALIZED_BIT = 1 << 192;

    /// @dev Channel record, one slot: payer (160) ‖ closeRequestedAt (40) ‖ closeDelay (24) ‖ route (32).
    /// The signer is not stored: it is part of the balance slot's key.
    struct Record {
        address payer;
        uint40 closeRequestedAt;
        uint24 closeDelay;
        uint32 route;
    }

    /// @dev A channel as the non-hot functions need it.
    struct Loaded {
        address payer;
        address payee;
        address token;
        address signer;
        bytes32 key;
        uint256 state;
    }

    /// @dev A payee/token pair, stored once and referred to by index from every channel that uses it.
    struct Route {
        address payee;
        address token;
    }

    mapping(bytes32 channelId => Record) private _records;
    mapping(bytes32 pairHash => uint32 index) private _routeIndex; // index + 1; 0 means none
    mapping(uint32 index => Route) private _routes;
    uint32 private _routeCount;
    mapping(address payee => mapping(address operator => bool)) private _operators;
    /// @dev Money that could not be delivered when it was paid out or refunded, until its owner {collect}s it.
    mapping(address token => mapping(address account => uint256)) private _owed;

    constructor() EIP712("ChannelEscrow", "1") {
        assert(_SETTLED_TOPIC == Settled.selector && _VOUCHER_TYPEHASH_LITERAL == VOUCHER_TYPEHASH);
    }

    // ================================================================ payer

    /// @inheritdoc IChannelEscrow
    function open(address payee, address token, address signer, uint128 amount, uint32 closeDelay, bytes32 salt)
        external
        nonReentrant
        returns (bytes32 channelId)
    {
        channelId = _create(msg.sender, payee, token, signer, amount, closeDelay, salt);
        _pull(token, msg.sender, amount);
    }

    /// @inheritdoc IChannelEscrow
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
    ) external nonReentrant returns (bytes32 channelId) {
        // A front-runner may have submitted the same permit already; the allowance is then in place.
        try IERC20Permit(token).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        channelId = _create(msg.sender, payee, token, signer, amount, closeDelay, salt);
        _pull(token, msg.sender, amount);
    }

    /// @inheritdoc IChannelEscrow
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
    ) external nonReentrant returns (bytes32 channelId) {
        if (payer == address(0)) revert InvalidPayer(payer);
        channelId = _create(payer, payee, token, signer, amount, closeDelay, salt);
        // The nonce binds the authorization to this channel (payer, payee, token, signer, salt) AND its close
        // delay, which the id does not cover: a relayer can neither redirect it nor choose another delay.
        _receiveAuthorized(
            token, payer, amount, validAfter, validBefore, authorizationNonce(channelId, closeDelay), signature
        );
    }

    /// @inheritdoc IChannelEscrow
    function topUp(bytes32 channelId, address signer, uint128 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Loaded memory c = _load(channelId, signer);
        if (c.payer != msg.sender) revert NotPayer(channelId, msg.sender);
        if (c.state & _FINALIZED_BIT != 0) revert ChannelFinalized(channelId);
        uint256 deposit = (c.state & _AMOUNT_MASK) + amount;
        if (deposit > MAX_DEPOSIT) revert DepositTooLarge(deposit, MAX_DEPOSIT);

        _storeBalance(c.key, (c.state & ~_AMOUNT_MASK) | deposit);
        Record storage rec = _records[channelId];
        if (rec.closeRequestedAt != 0) rec.closeRequestedAt = 0;
        emit ChannelToppedUp(channelId, amount, deposit);

        _pull(c.token, msg.sender, amount);
    }

    /// @inheritdoc IChannelEscrow
    function requestClose(bytes32 channelId, address signer) external nonReentrant {
        Loaded memory c = _load(channelId, signer);
        if (msg.sender != c.payer && msg.sender != c.signer) revert NotPayerOrSigner(channelId, msg.sender);
        if (c.state & _FINALIZED_BIT != 0) revert ChannelFinalized(channelId);
        Record storage rec = _records[channelId];
        uint256 requestedAt = rec.closeRequestedAt;
        if (requestedAt != 0) revert CloseAlreadyRequested(channelId, requestedAt + rec.closeDelay);

        rec.closeRequestedAt = uint40(block.timestamp);
        emit CloseRequested(channelId, uint64(block.timestamp + rec.closeDelay));
    }

    /// @inheritdoc IChannelEscrow
    function withdraw(bytes32 channelId, address signer) external nonReentrant {
        Loaded memory c = _load(channelId, signer);
        if (c.state & _FINALIZED_BIT != 0) revert ChannelFinalized(channelId);
        Record storage rec = _records[channelId];
        uint256 requestedAt = rec.closeRequestedAt;
        if (requestedAt == 0) revert CloseNotRequested(channelId);
        uint256 closesAt = requestedAt + rec.closeDelay;
        if (block.timestamp < closesAt) revert CloseDelayNotElapsed(channelId, closesAt, block.timestamp);

        uint256 refund = (c.state & _AMOUNT_MASK) - ((c.state >> _SETTLED_SHIFT) & _AMOUNT_MASK);
        _storeBalance(c.key, c.state | _FINALIZED_BIT);
        emit Withdrawn(channelId, refund);

        if (refund != 0) _send(c.token, c.payer, refund);
    }

    // ================================================================ payee

    /// @inheritdoc IChannelEscrow
    function settle(address payee, address token, bytes calldata items) external nonReentrant returns (uint256 total) {
        _checkPayeeOrOperator(payee);
        uint256 n = items.length / SETTLE_ITEM_SIZE;
        if (n == 0 || items.length % SETTLE_ITEM_SIZE != 0) revert MalformedSettleItems(items.length);
        bytes32 domainSeparator = _domainSeparatorV4();
        uint256 offset;
        assembly ("memory-safe") {
            offset := items.offset
        }
        // Run the valid items in one assembly loop; stop at each invalid one to explain it, then resume.
        for (uint256 i; i < n; ++i) {
            (uint256 stoppedAt, uint256 subtotal, address signer) = _settleRun(offset, i, n, payee, token, domainSeparator);
            total += subtotal;
            i = stoppedAt;
            if (i == n) break;
            _skip(offset + i * SETTLE_ITEM_SIZE, signer, payee, token);
        }
        if (total != 0) _send(token, payee, total);
    }

    /// @inheritdoc IChannelEscrow
    function settleContractSigned(address payee, address token, ContractSignedSettleItem[] calldata items)
        external
        nonReentrant
        returns (uint256 total)
    {
        _checkPayeeOrOperator(payee);
        uint256 n = items.length;
        if (n == 0) revert EmptyBatch();
        for (uint256 i; i < n; ++i) {
            ContractSignedSettleItem calldata item = items[i];
            bytes32 digest = _hashTypedDataV4(_voucherStructHash(item.channelId, item.cumulativeAmount));
            address signer = _isValidContractSignature(item.signer, digest, item.signature) ? item.signer : address(0);
            bytes32 key = _balanceKey(item.channelId, payee, token, signer);
            total += _apply(item.channelId, key, signer, payee, token, item.cumulativeAmount, item.amount);
        }
        if (total != 0) _send(token, payee, total);
    }

    /// @dev A channel's money: `deposit | settled << 96 | finalized << 192` in the storage slot whose number is
    /// `_balanceKey(channelId, payee, token, signer)` (a 128-byte keccak preimage, so it cannot collide with
    /// Solidity's own slots, whose preimages are 64 bytes).
    function _loadBalance(bytes32 key) private view returns (uint256 state) {
        assembly ("memory-safe") {
            state := sload(key)
        }
    }

    function _storeBalance(bytes32 key, uint256 state) private {
        assembly ("memory-safe") {
            sstore(key, state)
        }
    }

    /// @dev `Settled.selector` and `VOUCHER_TYPEHASH` as literals for assembly (checked in the constructor).
    bytes32 private constant _SETTLED_TOPIC = 0x00e6a93d8fb0d95dddd77524584b516298c8ad55deba7f39b3ef5f051acb5b32;
    bytes32 private constant _VOUCHER_TYPEHASH_LITERAL =
        0xe97c93f01d3ef8eaba1586553df13308f236815bf4ea49c7b696895d8f5ea68a;

    /**
     * @dev The hot path: settles items `from`, `from + 1`, ... while they are valid, and returns the index of
     * the first invalid one (or `n`), the amount settled, and the signer recovered for the invalid item.
     * Per item: two keccaks for the EIP-712 digest, ecrecover (low s, EIP-2098 v), one keccak for the balance
     * slot, one cold SLOAD, one SSTORE and the {Settled} event. In assembly, with the constant parts of every
     * hash input written once, so the per-channel cost stays near the physical bound.
     */
    function _settleRun(
        uint256 offset,
        uint256 from,
        uint256 n,
        address payee,
        address token,
        bytes32 domainSeparator
    ) private returns (uint256 i, uint256 subtotal, address signer) {
        assembly ("memory-safe") {
            // Scratch regions (from the free memory pointer; nothing is allocated):
            //   sh  [0x00, 0x60): VOUCHER_TYPEHASH ‖ channelId ‖ cumulativeAmount   -> structHash
            //   dg  [0x60, 0xa2): 0x1901 ‖ domainSeparator ‖ structHash             -> digest
            //   ec  [0xc0, 0x140): digest ‖ v ‖ r ‖ s                             -> ecrecover
            //   key [0x140, 0x1c0): channelId ‖ payee ‖ token ‖ signer             -> balance slot
            //   ev  [0x1c0, 0x1e0): amount                                         -> Settled data
            let sh := mload(0x40)
            let dg := add(sh, 0x60)
            let ec := add(sh, 0xc0)
            let key := add(sh, 0x140)
            let ev := add(sh, 0x1c0)
            mstore(sh, _VOUCHER_TYPEHASH_LITERAL)
            mstore(dg, 0x1901000000000000000000000000000000000000000000000000000000000000)
            mstore(add(dg, 0x02), domainSeparator)
            mstore(add(key, 0x20), payee)
            mstore(add(key, 0x40), token)
            // The loop walks the items' calldata (128 bytes each); `i` is derived from where it stopped.
            let item := add(offset, shl(7, from))
            let end := add(offset, shl(7, n))
            for {} lt(item, end) { item := add(item, 0x80) } {
                let channelId := calldataload(item)
                let amounts := calldataload(add(item, 0x20))
                let cumulative := shr(128, amounts)
                let vs := calldataload(add(item, 0x60))
                mstore(add(sh, 0x20), channelId)
                mstore(add(sh, 0x40), cumulative)
                mstore(add(dg, 0x22), keccak256(sh, 0x60))
                mstore(ec, keccak256(dg, 0x42))
                mstore(add(ec, 0x20), add(27, shr(255, vs)))
                mstore(add(ec, 0x40), calldataload(add(item, 0x40)))
                let s := and(vs, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff)
                mstore(add(ec, 0x60), s)
                mstore(0x00, 0)
                if iszero(gt(s, HALF_N)) { pop(staticcall(gas(), 0x01, ec, 0x80, 0x00, 0x20)) }
                signer := mload(0x00)
                // An empty slot unless channelId, payee, token and signer all match one channel.
                mstore(key, channelId)
                mstore(add(key, 0x60), signer)
                let slot := keccak256(key, 0x80)
                let state := sload(slot)
                let settled := and(shr(_SETTLED_SHIFT, state), _AMOUNT_MASK)
                let amount := and(amounts, 0xffffffffffffffffffffffffffffffff)
                // valid: signer recovered, not finalized, settled < amount <= min(cumulative, deposit)
                // (an empty slot has deposit 0, so `amount <= deposit` fails for it); stated as its negation,
                // which takes fewer opcodes per item
                if or(
                    or(iszero(signer), and(state, _FINALIZED_BIT)),
                    or(iszero(gt(amount, settled)), or(gt(amount, cumulative), gt(amount, and(state, _AMOUNT_MASK))))
                ) { break }
                sstore(slot, or(and(state, not(shl(_SETTLED_SHIFT, _AMOUNT_MASK))), shl(_SETTLED_SHIFT, amount)))
                subtotal := add(subtotal, sub(amount, settled))
                mstore(ev, amount)
                log2(ev, 0x20, _SETTLED_TOPIC, channelId)
            }
            i := shr(7, sub(item, offset))
        }
    }

    /// @dev Reads the claim fields of the packed settle item at calldata offset `item`.
    function _readItem(uint256 item) private pure returns (bytes32 channelId, uint256 cumulative, uint256 amount) {
        assembly ("memory-safe") {
            channelId := calldataload(item)
            let amounts := calldataload(add(item, 0x20))
            cumulative := shr(128, amounts)
            amount := and(amounts, 0xffffffffffffffffffffffffffffffff)
        }
    }

    /// @dev Emits {SettleSkipped} with the reason the packed item at `item` was not settled.
    function _skip(uint256 item, address signer, address payee, address token) private {
        (bytes32 channelId, uint256 cumulative, uint256 amount) = _readItem(item);
        _apply(channelId, _balanceKey(channelId, payee, token, signer), signer, payee, token, cumulative, amount);
    }

    /// @dev Checks one claim against the channel's balance slot and applies it, or emits {SettleSkipped}.
    function _apply(
        bytes32 channelId,
        bytes32 key,
        address signer,
        address payee,
        address token,
        uint256 cumulative,
        uint256 amount
    ) private returns (uint256 delta) {
        uint256 state = _loadBalance(key);
        uint256 settled = (state >> _SETTLED_SHIFT) & _AMOUNT_MASK;
        SkipReason reason;
        if (state == 0 || signer == address(0)) reason = _diagnose(channelId, payee, token);
        else if (state & _FINALIZED_BIT != 0) reason = SkipReason.Finalized;
        else if (amount <= settled) reason = SkipReason.AmountNotAboveSettled;
        else if (amount > cumulative) reason = SkipReason.AmountAboveVoucher;
        else if (amount > (state & _AMOUNT_MASK)) reason = SkipReason.AmountAboveDeposit;
        else {
            _storeBalance(key, (state & ~(_AMOUNT_MASK << _SETTLED_SHIFT)) | (amount << _SETTLED_SHIFT));
            unchecked {
                delta = amount - settled;
            }
            emit Settled(channelId, uint128(amount));
            return delta;
        }
        emit SettleSkipped(channelId, reason);
    }

    /// @inheritdoc IChannelEscrow
    function close(
        bytes32 channelId,
        address signer,
        uint128 cumulativeAmount,
        uint128 amount,
        bytes calldata signature,
        bytes calldata closeRequestSignature
    ) external nonReentrant {
        Loaded memory c = _load(channelId, signer);
        _checkPayeeOrOperator(c.payee);
        if (c.state & _FINALIZED_BIT != 0) revert ChannelFinalized(channelId);
        uint256 deposit = c.state & _AMOUNT_MASK;
        uint256 settled = (c.state >> _SETTLED_SHIFT) & _AMOUNT_MASK;

        uint256 payout;
        if (amount > settled) {
            _checkClaim(channelId, c.signer, cumulativeAmount, amount, deposit, signature);
            payout = amount - settled;
            settled = amount;
        }
        uint256 refund = deposit - settled;
        // An operator collects for the payee; giving money back before the deadline is the payee's call, or the
        // payer's request. Without this, a leaked operator key could refund a channel whose best voucher it ignores.
        if (refund != 0 && msg.sender != c.payee) _checkCloseConsent(channelId, c, closeRequestSignature);
        _storeBalance(c.key, deposit | (settled << _SETTLED_SHIFT) | _FINALIZED_BIT);
        if (payout != 0) emit Settled(channelId, uint128(settled));
        emit Closed(channelId, settled, refund);

        // Separate transfers: each party's money depends only on that party being able to receive.
        if (payout != 0) _send(c.token, c.payee, payout);
        if (refund != 0) _send(c.token, c.payer, refund);
    }

    /// @inheritdoc IChannelEscrow
    function collect(address token, address to) external nonReentrant returns (uint256 amount) {
        if (to == address(0) || to == address(this)) revert InvalidRecipient(to);
        amount = _owed[token][msg.sender];
        if (amount == 0) revert NothingOwed(token, msg.sender);
        _owed[token][msg.sender] = 0;
        emit Collected(token, msg.sender, to, amount);
        IERC20(token).safeTransfer(to, amount);
    }

    /// @inheritdoc IChannelEscrow
    function setOperator(address operator, bool approved) external {
        _operators[msg.sender][operator] = approved;
        emit OperatorSet(msg.sender, operator, approved);
    }

    // ================================================================ views

    /// @inheritdoc IChannelEscrow
    function getChannel(bytes32 channelId, address signer) public view returns (Channel memory channel) {
        Record storage rec = _records[channelId];
        address payer = rec.payer;
        if (payer == address(0)) return channel;
        Route memory route = _routes[rec.route];
        uint256 state = _loadBalance(_balanceKey(channelId, route.payee, route.token, signer));
        channel = Channel({
            payer: payer,
            payee: route.payee,
            token: route.token,
            // A live or finalized channel's balance slot is never zero (deposit > 0 from open on).
            signer: state == 0 ? address(0) : signer,
            deposit: uint128(state & _AMOUNT_MASK),
            settled: uint128((state >> _SETTLED_SHIFT) & _AMOUNT_MASK),
            closeRequestedAt: rec.closeRequestedAt,
            closeDelay: rec.closeDelay,
            finalized: state & _FINALIZED_BIT != 0
        });
    }

    /// @inheritdoc IChannelEscrow
    function getChannels(ChannelRef[] calldata refs) external view returns (Channel[] memory channels) {
        channels = new Channel[](refs.length);
        for (uint256 i; i < refs.length; ++i) {
            channels[i] = getChannel(refs[i].channelId, refs[i].signer);
        }
    }

    /// @inheritdoc IChannelEscrow
    function computeChannelId(address payer, address payee, address token, address signer, bytes32 salt)
        public
        view
        returns (bytes32)
    {
        if (signer == address(0)) signer = payer;
        return keccak256(abi.encode(block.chainid, address(this), payer, payee, token, signer, salt));
    }

    /// @inheritdoc IChannelEscrow
    function authorizationNonce(bytes32 channelId, uint32 closeDelay) public pure returns (bytes32) {
        return keccak256(abi.encode(channelId, closeDelay));
    }

    /// @inheritdoc IChannelEscrow
    function voucherDigest(bytes32 channelId, uint128 cumulativeAmount) external view returns (bytes32) {
        return _hashTypedDataV4(_voucherStructHash(channelId, cumulativeAmount));
    }

    /// @inheritdoc IChannelEscrow
    function isOperator(address payee, address operator) external view returns (bool) {
        return _operators[payee][operator];
    }

    /// @inheritdoc IChannelEscrow
    function owed(address token, address account) external view returns (uint256) {
        return _owed[token][account];
    }

    /// @inheritdoc IChannelEscrow
    function closeRequestDigest(bytes32 channelId) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(CLOSE_REQUEST_TYPEHASH, channelId)));
    }

    // ================================================================ internals

    /// @dev Checks the arguments and records a new channel (effects only; the caller pulls the tokens).
    function _create(
        address payer,
        address payee,
        address token,
        address signer,
        uint128 amount,
        uint32 closeDelay,
        bytes32 salt
    ) private returns (bytes32 channelId) {
        if (payee == address(0) || payee == address(this)) revert InvalidPayee(payee);
        if (token == address(0) || token == address(this)) revert InvalidToken(token);
        if (amount == 0) revert ZeroAmount();
        if (amount > MAX_DEPOSIT) revert DepositTooLarge(amount, MAX_DEPOSIT);
        if (closeDelay < MIN_CLOSE_DELAY || closeDelay > MAX_CLOSE_DELAY) {
            revert CloseDelayOutOfRange(closeDelay, MIN_CLOSE_DELAY, MAX_CLOSE_DELAY);
        }
        if (signer == address(0)) signer = payer;
        channelId = computeChannelId(payer, payee, token, signer, salt);
        Record storage rec = _records[channelId];
        if (rec.payer != address(0)) revert ChannelExists(channelId);

        rec.payer = payer;
        rec.closeDelay = uint24(closeDelay);
        rec.route = _routeFor(payee, token);
        _storeBalance(_balanceKey(channelId, payee, token, signer), amount);
        emit ChannelOpened(channelId, payer, payee, token, signer, amount, closeDelay);
    }

    /// @dev Index of the payee/token pair, registering it on first use.
    function _routeFor(address payee, address token) private returns (uint32 index) {
        bytes32 pair = keccak256(abi.encode(payee, token));
        index = _routeIndex[pair];
        if (index == 0) {
            index = ++_routeCount;
            _routeIndex[pair] = index;
            _routes[index] = Route(payee, token);
        }
    }

    /**
     * @dev Pays `amount` of `token` to `to`, or, when the transfer fails (a paused token, a blacklisted or otherwise
     * refusing recipient), keeps it owed to `to` for {collect}: what a party is owed never depends on whether it can
     * receive at that moment. A transfer that failed for lack of gas reverts the whole call instead (the caller's gas
     * limit, not the recipient, may be the cause), so nobody can push a payment into the owed book by starving it.
     */
    function _send(address token, address to, uint256 amount) private {
        uint256 gasBefore = gasleft();
        if (IERC20(token).trySafeTransfer(to, amount)) return;
        // After a call that used all the gas it was given, at most 1/64 of `gasBefore` is left (EIP-150).
        if (gasleft() <= gasBefore / 63) revert TransferOutOfGas(token, to);
        _owed[token][to] += amount;
        emit PaymentDeferred(token, to, amount);
    }

    /// @dev Pulls exactly `amount` from `from`; rejects tokens that deliver less (fee-on-transfer).
    function _pull(address token, address from, uint256 amount) private {
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(from, address(this), amount);
        _checkReceived(token, before, amount);
    }

    /// @dev Pulls exactly `amount` with EIP-3009 `receiveWithAuthorization`; rejects fee-on-transfer tokens.
    function _receiveAuthorized(
        address token,
        address payer,
        uint256 amount,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) private {
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC3009(token).receiveWithAuthorization(payer, address(this), amount, validAfter, validBefore, nonce, signature);
        _checkReceived(token, before, amount);
    }

    function _checkReceived(address token, uint256 before, uint256 amount) private view {
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert TransferAmountMismatch(token, amount, received);
    }

    /// @dev Reads a channel for the non-hot functions; reverts when unknown or when `signer` is not its signer
    /// (its balance slot is then empty: a channel's slot holds a non-zero deposit from `open` on).
    function _load(bytes32 channelId, address signer) private view returns (Loaded memory c) {
        Record storage rec = _records[channelId];
        c.payer = rec.payer;
        if (c.payer == address(0)) revert UnknownChannel(channelId);
        Route storage route = _routes[rec.route];
        c.payee = route.payee;
        c.token = route.token;
        c.signer = signer;
        c.key = _balanceKey(channelId, c.payee, c.token, signer);
        c.state = _loadBalance(c.key);
        if (c.state == 0) revert SignerMismatch(channelId, signer);
    }

    /// @dev The slot key that binds a channel's money to its payee, token and signer.
    function _balanceKey(bytes32 channelId, address payee, address token, address signer)
        private
        pure
        returns (bytes32 key)
    {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, channelId)
            mstore(add(ptr, 0x20), payee)
            mstore(add(ptr, 0x40), token)
            mstore(add(ptr, 0x60), signer)
            key := keccak256(ptr, 0x80)
        }
    }

    function _voucherStructHash(bytes32 channelId, uint256 cumulativeAmount) private pure returns (bytes32 h) {
        bytes32 typehash = VOUCHER_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            mstore(add(ptr, 0x20), channelId)
            mstore(add(ptr, 0x40), cumulativeAmount)
            h := keccak256(ptr, 0x60)
        }
    }

    /// @dev Whether `signature` is `signer`'s signature of `digest`, in the order of OpenZeppelin's
    /// SignatureChecker: ECDSA first (65 bytes, low s, v in {27, 28}; also for a key with code, e.g. an EIP-7702
    /// delegated account, so close accepts what settle accepts), then ERC-1271 (bounded gas) for a contract.
    function _isValidSignature(address signer, bytes32 digest, bytes calldata signature) private view returns (bool) {
        if (_recoverEcdsa(digest, signature) == signer && signer != address(0)) return true;
        return signer.code.length != 0 && _isValidContractSignature(signer, digest, signature);
    }

    /// @dev The ECDSA signer of a 65-byte signature, or address(0) when it is malformed or not canonical.
    function _recoverEcdsa(bytes32 digest, bytes calldata signature) private view returns (address recovered) {
        if (signature.length != 65) return address(0);
        assembly ("memory-safe") {
            let s := calldataload(add(signature.offset, 0x20))
            let v := byte(0, calldataload(add(signature.offset, 0x40)))
            if and(iszero(gt(s, HALF_N)), or(eq(v, 27), eq(v, 28))) {
                let m := mload(0x40)
                mstore(m, digest)
                mstore(add(m, 0x20), v)
                mstore(add(m, 0x40), calldataload(signature.offset))
                mstore(add(m, 0x60), s)
                mstore(0x00, 0)
                pop(staticcall(gas(), 0x01, m, 0x80, 0x00, 0x20))
                recovered := mload(0x00)
            }
        }
    }

    /// @dev ERC-1271 check with {ERC1271_GAS} gas and a 32-byte return, so a hostile wallet cannot
    /// make the caller run out of gas or copy a huge return.
    function _isValidContractSignature(address signer, bytes32 digest, bytes calldata signature)
        private
        view
        returns (bool valid)
    {
        if (signer.code.length == 0) return false;
        bytes memory data = abi.encodeWithSelector(0x1626ba7e, digest, signature);
        assembly ("memory-safe") {
            mstore(0x00, 0)
            let ok := staticcall(ERC1271_GAS, signer, add(data, 0x20), mload(data), 0x00, 0x20)
            // The whole 32-byte word must be the magic value (as OpenZeppelin's SignatureChecker): a wallet whose
            // fallback echoes its calldata returns the selector followed by other bytes, and must not pass.
            valid := and(and(ok, iszero(lt(returndatasize(), 0x20))), eq(mload(0x00), shl(224, 0x1626ba7e)))
        }
    }

    /// @dev Reverts {CloseNotConsented} unless the payer consented to an operator's {close}: a close is pending on
    /// chain, or `closeRequestSignature` is a `CloseRequest(channelId)` signed by the channel's signer or its payer.
    function _checkCloseConsent(bytes32 channelId, Loaded memory c, bytes calldata closeRequestSignature) private view {
        if (_records[channelId].closeRequestedAt != 0) return;
        if (closeRequestSignature.length != 0) {
            bytes32 digest = closeRequestDigest(channelId);
            if (_isValidSignature(c.signer, digest, closeRequestSignature)) return;
            if (_isValidSignature(c.payer, digest, closeRequestSignature)) return;
        }
        revert CloseNotConsented(channelId, msg.sender);
    }

    function _checkPayeeOrOperator(address payee) private view {
        if (msg.sender != payee && !_operators[payee][msg.sender]) revert NotPayeeOrOperator(payee, msg.sender);
    }

    /// @dev Reverts unless `amount` may be claimed with the voucher for `cumulativeAmount` ({close}).
    function _checkClaim(
        bytes32 channelId,
        address signer,
        uint256 cumulativeAmount,
        uint256 amount,
        uint256 deposit,
        bytes calldata signature
    ) private view {
        if (amount > cumulativeAmount) revert AmountAboveVoucher(channelId, amount, cumulativeAmount);
        if (amount > deposit) revert AmountAboveDeposit(channelId, amount, deposit);
        bytes32 digest = _hashTypedDataV4(_voucherStructHash(channelId, cumulativeAmount));
        if (!_isValidSignature(signer, digest, signature)) revert InvalidSignature(channelId);
    }

    /// @dev Why a settle item's balance slot was empty (cold path).
    function _diagnose(bytes32 channelId, address payee, address token) private view returns (SkipReason) {
        Record storage rec = _records[channelId];
        if (rec.payer == address(0)) return SkipReason.UnknownChannel;
        Route storage route = _routes[rec.route];
        if (route.payee != payee) return SkipReason.PayeeMismatch;
        if (route.token != token) return SkipReason.TokenMismatch;
        return SkipReason.InvalidSignature;
    }
}
