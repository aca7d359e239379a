// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Test-only token that calls back into a target during every transfer (a hostile token hook).
/// @dev The callback's revert data is kept so tests can assert the target refused the re-entry.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public callData;
    bool public attempted;
    bool public reentered;
    bytes public lastRevert;

    constructor() ERC20("Reentrant", "RE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address target_, bytes calldata callData_) external {
        target = target_;
        callData = callData_;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        address t = target;
        if (t != address(0) && from != address(0)) {
            target = address(0); // one attempt per arming
            attempted = true;
            (bool ok, bytes memory ret) = t.call(callData);
            reentered = ok;
            lastRevert = ret;
        }
    }
}
