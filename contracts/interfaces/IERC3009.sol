// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice The part of EIP-3009 (transfer with authorization, as in USDC v2.2) the escrow uses.
interface IERC3009 {
    /// @notice Receives `value` from `from`, authorized by `from`'s EIP-712 signature; `msg.sender` must be `to`.
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external;
}
