// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Test-only token that burns a fee (1% by default) of every transfer, so the recipient gets less than
/// was sent. The fee can be changed, to model a token that starts charging after a channel was opened.
contract FeeOnTransferToken is ERC20 {
    uint256 public feePercent = 1;

    constructor() ERC20("Fee Token", "FEE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setFeePercent(uint256 feePercent_) external {
        require(feePercent_ <= 100, "fee above 100%");
        feePercent = feePercent_;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from != address(0) && to != address(0)) {
            uint256 fee = value * feePercent / 100;
            if (fee != 0) super._update(from, address(0), fee);
            value -= fee;
        }
        super._update(from, to, value);
    }
}
