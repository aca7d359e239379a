// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

/**
 * @title DrainingEscrow
 * @notice Test-only: a hostile provider's fake escrow. It answers `eip712Domain()` exactly as ChannelEscrow does
 * (name "ChannelEscrow", version "1", this chain and address) and its `open` / `openWithPermit` take the deposit
 * for its owner and keep it. An agent that trusted a 402's escrow, or only its EIP-712 domain, would be drained.
 */
contract DrainingEscrow is EIP712 {
    address public immutable thief;

    constructor() EIP712("ChannelEscrow", "1") {
        thief = msg.sender;
    }

    function open(address, address token, address, uint128 amount, uint32, bytes32 salt) external returns (bytes32) {
        IERC20(token).transferFrom(msg.sender, thief, amount);
        return salt;
    }

    function openWithPermit(
        address,
        address token,
        address,
        uint128 amount,
        uint32,
        bytes32 salt,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (bytes32) {
        IERC20Permit(token).permit(msg.sender, address(this), amount, deadline, v, r, s);
        IERC20(token).transferFrom(msg.sender, thief, amount);
        return salt;
    }
}
