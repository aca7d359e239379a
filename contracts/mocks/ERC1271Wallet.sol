// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @notice Test-only ERC-1271 contract wallet with a selectable behaviour.
contract ERC1271Wallet {
    enum Mode {
        Valid, // accepts signatures by `owner`
        Invalid, // returns a wrong magic value
        Reverting, // reverts
        GasBurning // burns all the gas it is given
    }

    address public immutable owner;
    Mode public mode;

    constructor(address owner_, Mode mode_) {
        owner = owner_;
        mode = mode_;
    }

    function setMode(Mode mode_) external {
        mode = mode_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        Mode m = mode;
        if (m == Mode.Reverting) revert("ERC1271Wallet: reverting");
        if (m == Mode.GasBurning) {
            uint256 x;
            while (gasleft() > 0) x = uint256(keccak256(abi.encode(x)));
        }
        if (m == Mode.Invalid) return 0xffffffff;
        (address recovered,,) = ECDSA.tryRecover(hash, signature);
        return recovered == owner ? bytes4(0x1626ba7e) : bytes4(0xffffffff);
    }

    /// @notice Lets the wallet act on channels it is signer of (e.g. requestClose).
    function execute(address target, bytes calldata data) external returns (bytes memory) {
        require(msg.sender == owner, "ERC1271Wallet: not owner");
        (bool ok, bytes memory ret) = target.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }
}
