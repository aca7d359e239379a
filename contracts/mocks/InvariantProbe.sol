// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IChannelEscrow} from "../interfaces/IChannelEscrow.sol";

/// @notice Test-only reader for the invariant fuzz (test/contracts/invariants.test.ts): the balances, owed amounts and
/// channels the test checks after a step, read in one `eth_call` instead of one per value. It writes nothing.
contract InvariantProbe {
    /// @return balances `tokens[t].balanceOf(holders[h])` at index `t * holders.length + h`
    /// @return owed `escrow.owed(tokens[t], owedTo[a])` at index `t * owedTo.length + a`
    /// @return channels `escrow.getChannels(refs)`
    function read(
        IChannelEscrow escrow,
        address[] calldata tokens,
        address[] calldata holders,
        address[] calldata owedTo,
        IChannelEscrow.ChannelRef[] calldata refs
    ) external view returns (uint256[] memory balances, uint256[] memory owed, IChannelEscrow.Channel[] memory channels) {
        balances = new uint256[](tokens.length * holders.length);
        owed = new uint256[](tokens.length * owedTo.length);
        for (uint256 t; t < tokens.length; ++t) {
            for (uint256 h; h < holders.length; ++h) {
                balances[t * holders.length + h] = IERC20(tokens[t]).balanceOf(holders[h]);
            }
            for (uint256 a; a < owedTo.length; ++a) {
                owed[t * owedTo.length + a] = escrow.owed(tokens[t], owedTo[a]);
            }
        }
        channels = escrow.getChannels(refs);
    }
}
