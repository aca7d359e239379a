// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Test-only token with a hostile receive hook: a transfer to a `trapped` account burns all the gas it is
/// given (as a token calling a recipient hook that loops forever would). Transfers to others work normally.
contract HookToken is ERC20 {
    mapping(address account => bool) public trapped;

    constructor() ERC20("Hook", "HOOK") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function trap(address account, bool on) external {
        trapped[account] = on;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (from != address(0) && trapped[to]) {
            uint256 x;
            while (true) x = uint256(keccak256(abi.encode(x)));
        }
    }
}
