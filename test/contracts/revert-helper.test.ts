/** The revert helper itself can fail: wrong name, wrong arguments and success are all reported. */
import { expect } from "chai";
import { zeroAddress } from "viem";
import { deployEscrow, DAY, nextSalt, type Env } from "../helpers/escrow";
import { decodeRevert, expectRevert } from "../helpers/revert";

describe("test helper: expectRevert", () => {
  let env: Env;
  before(async () => {
    env = await deployEscrow();
  });
  const zeroOpen = () =>
    env.escrow.write.open([env.wallets[0].account.address, env.usdc.address, zeroAddress, 0n, DAY, nextSalt()], { account: env.wallets[1].account });
  const badDelay = () =>
    env.escrow.write.open([env.wallets[0].account.address, env.usdc.address, zeroAddress, 1n, 1, nextSalt()], { account: env.wallets[1].account });

  it("decodes the custom error name and arguments from a viem write error", async () => {
    const d = await expectRevert(badDelay(), "CloseDelayOutOfRange", [1, 900, 2_592_000]);
    expect(d.errorName).to.equal("CloseDelayOutOfRange");
    expect(d.args).to.deep.equal([1n, 900n, 2_592_000n]);
  });

  it("fails on another error name, other arguments, or success", async () => {
    let failure: unknown;
    await expectRevert(zeroOpen(), "InvalidPayee").catch((e) => (failure = e));
    expect(String(failure)).to.match(/expected 'ZeroAmount' to equal 'InvalidPayee'/);
    failure = undefined;
    await expectRevert(badDelay(), "CloseDelayOutOfRange", [2, 900, 2_592_000]).catch((e) => (failure = e));
    expect(String(failure)).to.match(/arguments of CloseDelayOutOfRange/);
    failure = undefined;
    await expectRevert(Promise.resolve("0x"), "ZeroAmount").catch((e) => (failure = e));
    expect(String(failure)).to.match(/but the call succeeded/);
  });

  it("returns null for an error that carries no revert data", () => {
    expect(decodeRevert(new Error("network down"))).to.equal(null);
  });
});
