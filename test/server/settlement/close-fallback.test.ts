/**
 * A close the job cannot send falls back to `settle`, so the payee is still paid before the payer can withdraw:
 * - the payer topped up (cancelling its on-chain close request) after the server saw the request, so an operator's
 *   refunding close has no consent (`CloseNotConsented`);
 * - the token's receive hook burns all the gas of the refund to the payer (`TransferOutOfGas`).
 * Real escrow on the in-process chain, an operator settler (`setOperator`), the real server's follower and store.
 */
import hre from "hardhat";
import { expect } from "chai";
import { parseEther, toHex, type Hex } from "viem";
import { channelEscrowAbi } from "@paychan/protocol";
import { mockUsdcAbi } from "@paychan/demo";
import { createSettlement, resolveSettlementConfig } from "@paychan/server";
import { deployEscrow, openChannel, sessionKey, USDC, type Env, type OpenedChannel } from "../../helpers/escrow";
import { call, startTestServer, type TestServer } from "../../helpers/server";
import { settlementHarness } from "../../helpers/settlement";

const PRICE = 1_000n; // /v1/echo: 0.001 USDC

describe("settlement: a close that cannot be sent falls back to settle", function () {
  this.timeout(120_000);

  describe("the payer's top-up cancelled the on-chain close the server saw", () => {
    let srv: TestServer;
    const operator = sessionKey();

    before(async () => {
      srv = await startTestServer();
      await hre.network.provider.send("hardhat_setBalance", [operator.address, toHex(parseEther("10"))]);
      const h = await srv.env.wallets[0].writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "setOperator", args: [operator.address, true] });
      await srv.env.publicClient.waitForTransactionReceipt({ hash: h });
    });
    after(async () => srv?.close());

    const balance = (a: Hex) => srv.env.publicClient.readContract({ address: srv.token, abi: mockUsdcAbi, functionName: "balanceOf", args: [a] }) as Promise<bigint>;
    const onChain = async (ch: OpenedChannel) =>
      (await srv.env.publicClient.readContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "getChannel", args: [ch.id, ch.signer] })) as {
        deposit: bigint;
        settled: bigint;
        finalized: boolean;
        closeRequestedAt: bigint;
      };

    it("settles what the channel owes when the operator's close reverts CloseNotConsented, and reports the fallback", async () => {
      const ch = await openChannel(srv.env, { payerIndex: 3, deposit: USDC(5) });
      const terms = await srv.terms("/v1/echo?msg=hi");
      for (let k = 1n; k <= 4n; k++) {
        const a = await call(`${srv.url}/v1/echo?msg=hi`, { headers: srv.pay(terms, ch.voucher.sign(ch.id, k * PRICE)) });
        expect(a.status, JSON.stringify(a.body)).to.equal(200);
      }
      const spent = 4n * PRICE;
      const payer = srv.env.wallets[3];
      await payer.writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "requestClose", args: [ch.id, ch.signer] });
      await srv.sync(); // the server's follower sees CloseRequested
      expect((await srv.store.getChannel(ch.id))!.closesAt).to.be.greaterThan(0);

      // From here the server sees nothing more: the payer's top-up (which cancels the close request) stays unseen.
      await srv.server.follower.stop();
      await payer.writeContract({ address: srv.token, abi: mockUsdcAbi, functionName: "mint", args: [ch.payer, USDC(1)] });
      await payer.writeContract({ address: srv.token, abi: mockUsdcAbi, functionName: "approve", args: [srv.escrow, USDC(1)] });
      await payer.writeContract({ address: srv.escrow, abi: channelEscrowAbi, functionName: "topUp", args: [ch.id, ch.signer, USDC(1)] });
      expect(await onChain(ch)).to.include({ closeRequestedAt: 0n, deposit: USDC(6) });
      expect((await srv.store.getChannel(ch.id))!.closesAt).to.be.greaterThan(0);

      const payeeBefore = await balance(srv.payee);
      const { job, chain } = createSettlement({
        config: { ...resolveSettlementConfig({}, srv.chainId), closeGrace: 0 },
        privateKey: operator.key,
        rpcUrl: srv.rpcUrl,
        chainId: srv.chainId,
        escrow: srv.escrow,
        token: srv.token,
        payee: srv.payee,
        decimals: srv.server.decimals,
        store: srv.store,
        reader: srv.server.reader,
        pollInterval: 50,
        logger: srv.server.logger,
      });
      expect(chain.sender).to.equal(operator.address);
      const r = await job.runOnce({ wait: true });
      expect(r.selected).to.deep.equal({ close_requested_on_chain: 1 });
      expect(r.closeFallbacks).to.deep.equal([{ channelId: ch.id, error: "CloseNotConsented", amount: spent }]);
      expect(r.txs.map((t) => [t.kind, t.status])).to.deep.equal([["settle", "confirmed"]]);
      expect(r).to.include({ channelsSettled: 1, channelsClosed: 0, amountSettled: spent });
      expect(r.failures).to.deep.equal([]);
      expect(await onChain(ch)).to.include({ settled: spent, finalized: false });
      expect((await balance(srv.payee)) - payeeBefore).to.equal(spent);
      expect((await srv.store.getChannel(ch.id))!.settled).to.equal(spent);
    });
  });

  describe("the refund to the payer burns all the gas (a hostile token hook)", () => {
    it("settles what the channel owes when the close reverts TransferOutOfGas, and reports the fallback", async () => {
      const base = await deployEscrow();
      const hook = await hre.viem.deployContract("HookToken");
      // The harness and openChannel only need mint, approve and balanceOf, which the hook token has.
      const env = { ...base, usdc: hook } as unknown as Env;
      const h = await settlementHarness({ env });
      try {
        const ch = await h.paidChannel({ spent: 7_000n, payerIndex: 4 });
        await base.wallets[4].writeContract({ address: base.escrow.address, abi: channelEscrowAbi, functionName: "requestClose", args: [ch.id, ch.signer] });
        await hook.write.trap([ch.payer, true]);
        const payeeBefore = await h.tokenBalance(h.payee);
        // The one-shot command's way: re-read the candidates from the chain (no follower here).
        const r = await h.settlement().job.runOnce({ wait: true, refreshCandidates: true });
        expect(r.selected).to.deep.equal({ close_requested_on_chain: 1 });
        expect(r.closeFallbacks).to.deep.equal([{ channelId: ch.id, error: "TransferOutOfGas", amount: 7_000n }]);
        expect(r.txs.map((t) => [t.kind, t.status])).to.deep.equal([["settle", "confirmed"]]);
        expect(r).to.include({ channelsSettled: 1, amountSettled: 7_000n });
        expect(await h.channelOnChain(ch)).to.include({ settled: 7_000n, finalized: false });
        expect((await h.tokenBalance(h.payee)) - payeeBefore).to.equal(7_000n);
        expect((await h.stored(ch.id)).settled).to.equal(7_000n);
      } finally {
        await h.close();
      }
    });
  });
});
