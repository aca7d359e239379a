// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/**
 * @title MockUSDC
 * @notice A USDC stand-in for local networks and tests: 6 decimals, anyone may `mint`, EIP-2612 `permit`,
 * EIP-3009 `transferWithAuthorization` / `receiveWithAuthorization` / `cancelAuthorization`, and owner-controlled
 * blacklist and pause that make transfers revert as USDC's do.
 * @dev Storage follows FiatToken v2.2 where it matters for gas: the blacklist flag is the top bit of the balance
 * word and `paused` shares a slot with `owner`, so a transfer costs about what USDC's does.
 */
contract MockUSDC is IERC20, IERC20Metadata, IERC20Permit, EIP712 {
    bytes32 public constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
    bytes32 public constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    bytes32 public constant RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    bytes32 public constant CANCEL_AUTHORIZATION_TYPEHASH =
        keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");

    uint256 private constant _BLACKLIST_BIT = 1 << 255;

    address public owner;
    bool public paused;
    uint256 public totalSupply;
    mapping(address account => uint256) private _balanceAndFlag;
    mapping(address owner => mapping(address spender => uint256)) public allowance;
    mapping(address owner => uint256) public nonces;
    mapping(address authorizer => mapping(bytes32 nonce => bool)) public authorizationState;

    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
    event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce);
    event Blacklisted(address indexed account, bool blacklisted);
    event PauseChanged(bool paused);

    error NotOwner(address caller);
    error Paused();
    error AccountBlacklisted(address account);
    error InsufficientBalance(address account, uint256 balance, uint256 needed);
    error InsufficientAllowance(address spender, uint256 allowance, uint256 needed);
    error InvalidAccount(address account);
    error PermitExpired(uint256 deadline);
    error InvalidSigner(address expected);
    error AuthorizationNotYetValid(uint256 validAfter);
    error AuthorizationExpired(uint256 validBefore);
    error AuthorizationAlreadyUsed(address authorizer, bytes32 nonce);
    error CallerMustBePayee(address caller, address payee);

    constructor() EIP712("USD Coin", "2") {
        owner = msg.sender;
    }

    // ---------------------------------------------------------------- ERC-20

    function name() external pure returns (string memory) {
        return "USD Coin";
    }

    function symbol() external pure returns (string memory) {
        return "USDC";
    }

    function decimals() external pure returns (uint8) {
        return 6;
    }

    function balanceOf(address account) public view returns (uint256) {
        return _balanceAndFlag[account] & ~_BLACKLIST_BIT;
    }

    function isBlacklisted(address account) external view returns (bool) {
        return _balanceAndFlag[account] & _BLACKLIST_BIT != 0;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        _notBlacklisted(msg.sender);
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < value) revert InsufficientAllowance(msg.sender, allowed, value);
            unchecked {
                allowance[from][msg.sender] = allowed - value;
            }
        }
        _transfer(from, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        _approve(msg.sender, spender, value);
        return true;
    }

    /// @notice Anyone may mint on a local network.
    function mint(address to, uint256 amount) external {
        if (to == address(0)) revert InvalidAccount(to);
        _notBlacklisted(to);
        totalSupply += amount;
        _balanceAndFlag[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    // ---------------------------------------------------------------- USDC-like controls

    function blacklist(address account, bool blacklisted) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        uint256 word = _balanceAndFlag[account];
        _balanceAndFlag[account] = blacklisted ? word | _BLACKLIST_BIT : word & ~_BLACKLIST_BIT;
        emit Blacklisted(account, blacklisted);
    }

    function setPaused(bool paused_) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        paused = paused_;
        emit PauseChanged(paused_);
    }

    // ---------------------------------------------------------------- EIP-2612

    function permit(address owner_, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
    {
        if (block.timestamp > deadline) revert PermitExpired(deadline);
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(PERMIT_TYPEHASH, owner_, spender, value, nonces[owner_]++, deadline))
        );
        if (ECDSA.recover(digest, v, r, s) != owner_) revert InvalidSigner(owner_);
        _approve(owner_, spender, value);
    }

    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---------------------------------------------------------------- EIP-3009

    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) public {
        _useAuthorization(TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce, signature);
        _transfer(from, to, value);
    }

    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        transferWithAuthorization(from, to, value, validAfter, validBefore, nonce, abi.encodePacked(r, s, v));
    }

    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) public {
        if (to != msg.sender) revert CallerMustBePayee(msg.sender, to);
        _useAuthorization(RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce, signature);
        _transfer(from, to, value);
    }

    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        receiveWithAuthorization(from, to, value, validAfter, validBefore, nonce, abi.encodePacked(r, s, v));
    }

    function cancelAuthorization(address authorizer, bytes32 nonce, bytes calldata signature) external {
        if (paused) revert Paused();
        if (authorizationState[authorizer][nonce]) revert AuthorizationAlreadyUsed(authorizer, nonce);
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce)));
        if (!SignatureChecker.isValidSignatureNow(authorizer, digest, signature)) revert InvalidSigner(authorizer);
        authorizationState[authorizer][nonce] = true;
        emit AuthorizationCanceled(authorizer, nonce);
    }

    // ---------------------------------------------------------------- internals

    function _useAuthorization(
        bytes32 typehash,
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) private {
        if (block.timestamp <= validAfter) revert AuthorizationNotYetValid(validAfter);
        if (block.timestamp >= validBefore) revert AuthorizationExpired(validBefore);
        if (authorizationState[from][nonce]) revert AuthorizationAlreadyUsed(from, nonce);
        bytes32 digest =
            _hashTypedDataV4(keccak256(abi.encode(typehash, from, to, value, validAfter, validBefore, nonce)));
        if (!SignatureChecker.isValidSignatureNow(from, digest, signature)) revert InvalidSigner(from);
        authorizationState[from][nonce] = true;
        emit AuthorizationUsed(from, nonce);
    }

    function _transfer(address from, address to, uint256 value) private {
        if (paused) revert Paused();
        if (to == address(0)) revert InvalidAccount(to);
        uint256 fromWord = _balanceAndFlag[from];
        if (fromWord & _BLACKLIST_BIT != 0) revert AccountBlacklisted(from);
        uint256 toWord = _balanceAndFlag[to];
        if (toWord & _BLACKLIST_BIT != 0) revert AccountBlacklisted(to);
        if (fromWord < value) revert InsufficientBalance(from, fromWord, value);
        unchecked {
            _balanceAndFlag[from] = fromWord - value;
        }
        _balanceAndFlag[to] = _balanceAndFlag[to] + value;
        emit Transfer(from, to, value);
    }

    function _approve(address owner_, address spender, uint256 value) private {
        if (paused) revert Paused();
        _notBlacklisted(owner_);
        _notBlacklisted(spender);
        allowance[owner_][spender] = value;
        emit Approval(owner_, spender, value);
    }

    function _notBlacklisted(address account) private view {
        if (_balanceAndFlag[account] & _BLACKLIST_BIT != 0) revert AccountBlacklisted(account);
    }
}
