// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice Test-only hostile "wallet": every call returns the 4 bytes `0x1626ba7e` (the ERC-1271 magic value) and
/// nothing else, not the 32-byte ABI word. A checker that pre-zeroes its output buffer and then compares the whole
/// word without requiring 32 bytes of return data would read `0x1626ba7e00…00` and take every signature as valid.
contract FourByteWallet {
    fallback() external {
        assembly {
            mstore(0, shl(224, 0x1626ba7e))
            return(0, 4)
        }
    }
}
