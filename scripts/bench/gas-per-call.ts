/**
 * Gas per paid call: the x402 `exact` way (one EIP-3009 `MockUSDC.transferWithAuthorization` per call, submitted by a
 * facilitator, to a payee that already holds tokens) vs channels (one `open`, then one `settle` item per channel in
 * a batch) for 1, 10, 100 and 1,000 calls per channel and 1, 10, 100 channels per settle batch, measured on the
 * local chain. Every settle is a real transaction on real channels with a real voucher for `calls × price`.
 *
 *   gas per call (channel, settle only)    = (settle batch gas / channels in batch) / calls
 *   gas per call (channel, open + settle)  = (open gas + settle batch gas / channels in batch) / calls
 */
import { hexToSignature, type Abi, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { channelEscrowAbi, encodeSettleItems, PERMIT_TYPES, TRANSFER_WITH_AUTHORIZATION_TYPES } from "@paychan/protocol";
import { hardhatAccount, mockUsdcAbi } from "@paychan/demo";
import { fundPayer, openBenchChannel, type BenchChain, type BenchChannel } from "./chain";

/** The x402 `exact` figure the targets are stated against (gas per call). */
export const X402_EXACT_REFERENCE_GAS = 85_704;
export const CALLS_PER_CHANNEL = [1, 10, 100, 1_000] as const;
export const CHANNELS_PER_BATCH = [1, 10, 100] as const;
/** Price of one call in atomic units (0.001 USDC). */
const PRICE = 1_000n;

export interface GasResults {
  /** transferWithAuthorization(…, bytes signature), warm payee: gas per call (median of the runs). */
  x402Bytes: number;
  /** transferWithAuthorization(…, v, r, s), warm payee. */
  x402Vrs: number;
  /** `open` with a standing allowance (not the first channel of the payee/token pair), median. */
  open: number;
  /** `openWithPermit` (one transaction, no prior approve: what the client SDK does with an EIP-2612 token). */
  openWithPermit: number;
  /** `approve` of the escrow (once per payer and token when a standing allowance is used). */
  approve: number;
  /** settle gas per (calls, batch): the whole transaction. */
  settle: Array<{ calls: number; batch: number; gas: number }>;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Measures everything on `chain` (fresh contracts; uses Hardhat accounts #0 payee, #5 – #8). */
export async function measureGasPerCall(chain: BenchChain, log: (m: string) => void = () => {}): Promise<GasResults> {
  const PAYEE = 0;
  const X402_PAYER = 5;
  const FACILITATOR = 6;
  const CHANNEL_PAYER = 7;
  const PERMIT_PAYER = 8;
  const payee = chain.account(PAYEE);
  const tokenDomain = { name: "USD Coin", version: "2", chainId: chain.chainId, verifyingContract: chain.token } as const;

  // ---- x402 exact: one authorization transfer per call.
  const x402Payer = privateKeyToAccount(hardhatAccount(X402_PAYER).key);
  await chain.send(X402_PAYER, chain.token, mockUsdcAbi as Abi, "mint", [x402Payer.address, 1_000_000_000n]);
  let nonceCounter = 0;
  const authorize = async () => {
    const nonce = `0x${(++nonceCounter).toString(16).padStart(8, "0")}${"ab".repeat(28)}` as Hex;
    const message = { from: x402Payer.address, to: payee, value: PRICE, validAfter: 0n, validBefore: 2n ** 40n, nonce };
    const signature = await x402Payer.signTypedData({ domain: tokenDomain, types: TRANSFER_WITH_AUTHORIZATION_TYPES, primaryType: "TransferWithAuthorization", message });
    return { message, signature };
  };
  const x402 = async (form: "bytes" | "vrs") => {
    const { message: m, signature } = await authorize();
    const base = [m.from, m.to, m.value, m.validAfter, m.validBefore, m.nonce];
    const { v, r, s } = hexToSignature(signature);
    const args = form === "bytes" ? [...base, signature] : [...base, Number(v), r, s];
    return Number((await chain.send(FACILITATOR, chain.token, mockUsdcAbi as Abi, "transferWithAuthorization", args)).gasUsed);
  };
  await x402("bytes"); // the payee now holds tokens (warm payee), as in the reference figure
  const x402Bytes = median([await x402("bytes"), await x402("bytes"), await x402("bytes"), await x402("bytes"), await x402("bytes")]);
  const x402Vrs = median([await x402("vrs"), await x402("vrs"), await x402("vrs"), await x402("vrs"), await x402("vrs")]);
  log(`x402 exact: ${x402Bytes} (bytes signature), ${x402Vrs} (v, r, s)`);

  // ---- channels: a standing allowance (decremented by every open, never reaching zero: no refund flatters `open`).
  const channelsNeeded = CALLS_PER_CHANNEL.length * CHANNELS_PER_BATCH.reduce((a, b) => a + b, 0) + 8;
  const totalDeposit = BigInt(channelsNeeded) * 1_000n * PRICE;
  await chain.send(CHANNEL_PAYER, chain.token, mockUsdcAbi as Abi, "mint", [chain.account(CHANNEL_PAYER), totalDeposit * 2n]);
  const approve = Number((await chain.send(CHANNEL_PAYER, chain.token, mockUsdcAbi as Abi, "approve", [chain.escrow, totalDeposit * 2n])).gasUsed);
  // The first channel of a payee/token pair registers the pair (one-time ~70k): not counted.
  await openBenchChannel(chain, { payerIndex: CHANNEL_PAYER, payee, deposit: PRICE });

  const opens: number[] = [];
  const settle: GasResults["settle"] = [];
  for (const calls of CALLS_PER_CHANNEL) {
    for (const batch of CHANNELS_PER_BATCH) {
      const amount = BigInt(calls) * PRICE;
      const chans: BenchChannel[] = [];
      for (let i = 0; i < batch; i++) chans.push(await openBenchChannel(chain, { payerIndex: CHANNEL_PAYER, payee, deposit: amount }));
      for (const c of chans) opens.push(Number(c.openGas));
      const items = encodeSettleItems(
        chans.map((c) => ({ channelId: c.id, cumulativeAmount: amount, amount, signature: c.signer.sign(c.id, amount).signature })),
      );
      const r = await chain.send(PAYEE, chain.escrow, channelEscrowAbi as Abi, "settle", [payee, chain.token, items]);
      settle.push({ calls, batch, gas: Number(r.gasUsed) });
      log(`settle ${batch} channel(s) of ${calls} call(s): ${r.gasUsed}`);
    }
  }

  // ---- openWithPermit: what the client SDK sends for an EIP-2612 token (no separate approve).
  const permitPayer = privateKeyToAccount(hardhatAccount(PERMIT_PAYER).key);
  await fundPayer(chain, PERMIT_PAYER, 100n * PRICE, 0n);
  const permitRuns: number[] = [];
  for (let i = 0; i < 3; i++) {
    const nonce = (await chain.publicClient.readContract({ address: chain.token, abi: mockUsdcAbi, functionName: "nonces", args: [permitPayer.address] })) as bigint;
    const deadline = 2n ** 40n;
    const sig = await permitPayer.signTypedData({
      domain: tokenDomain,
      types: PERMIT_TYPES,
      primaryType: "Permit",
      message: { owner: permitPayer.address, spender: chain.escrow, value: PRICE, nonce, deadline },
    });
    const { v, r, s } = hexToSignature(sig);
    const signer = privateKeyToAccount(`0x${(i + 1).toString(16).padStart(64, "7")}` as Hex).address;
    const salt = `0x${(i + 1).toString(16).padStart(64, "5")}` as Hex;
    const res = await chain.send(PERMIT_PAYER, chain.escrow, channelEscrowAbi as Abi, "openWithPermit", [
      payee,
      chain.token,
      signer,
      PRICE,
      86_400,
      salt,
      deadline,
      Number(v),
      r,
      s,
    ]);
    permitRuns.push(Number(res.gasUsed));
  }
  return { x402Bytes, x402Vrs, open: median(opens), openWithPermit: median(permitRuns), approve, settle };
}

/** Gas per call for one (calls, batch) cell. */
export function perCall(g: GasResults, calls: number, batch: number): { settleOnly: number; withOpen: number; settleGas: number } {
  const cell = g.settle.find((s) => s.calls === calls && s.batch === batch);
  if (!cell) throw new Error(`no settle measurement for ${calls} calls × ${batch} channels`);
  const perChannel = cell.gas / batch;
  return { settleOnly: perChannel / calls, withOpen: (g.open + perChannel) / calls, settleGas: cell.gas };
}
