// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice Test-only: a token that publishes its EIP-712 domain as FiatToken USDC does, through `DOMAIN_SEPARATOR()`
/// and `version()`, without EIP-5267's `eip712Domain()`. The client's check of an `exact` offer's domain
/// (client/src/token-domain.ts) compares the offered name and version with this separator. Holds no balances.
contract SeparatorOnlyToken {
    bytes32 public immutable DOMAIN_SEPARATOR;

    constructor() {
        DOMAIN_SEPARATOR = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256(bytes("USD Coin")),
                keccak256(bytes("2")),
                block.chainid,
                address(this)
            )
        );
    }

    function name() external pure returns (string memory) {
        return "USD Coin";
    }

    function symbol() external pure returns (string memory) {
        return "USDC";
    }

    function decimals() external pure returns (uint8) {
        return 6;
    }

    function version() external pure returns (string memory) {
        return "2";
    }
}
