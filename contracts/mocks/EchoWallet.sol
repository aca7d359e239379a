// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice Test-only hostile "wallet": every call returns its own calldata. Asked `isValidSignature(hash, sig)`, it
/// answers a word that starts with the ERC-1271 magic value `0x1626ba7e` (the selector) followed by `hash`.
/// A checker that compares only the first 4 bytes of the answer would take every signature as valid.
contract EchoWallet {
    fallback() external {
        assembly {
            calldatacopy(0, 0, calldatasize())
            return(0, calldatasize())
        }
    }
}
