/**
 * Voucher throughput on one core: verified per second with `VoucherVerifier` (precomputed domain, native
 * secp256k1 recovery) vs viem's `verifyTypedData`, and signed per second with `VoucherSigner` vs viem's
 * `signTypedData`, in the same run. Prints a small table.
 *
 *   ts-node scripts/bench/verify.ts [--seconds N]   (default 2 seconds per measurement)
 *
 * `measureVoucherThroughput(seconds)` is what `npm run bench` (scripts/bench/index.ts) uses.
 */
import { verifyTypedData, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { escrowDomain, VOUCHER_TYPES, VoucherSigner, VoucherVerifier, type Voucher } from "@paychan/protocol";

const domain = escrowDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
const key = generatePrivateKey();
const account = privateKeyToAccount(key);
const N = 4096; // distinct vouchers, so no measurement is a cache hit
const ids: Hex[] = Array.from({ length: N }, (_, i) => `0x${(i + 1).toString(16).padStart(64, "0")}` as Hex);
const amountOf = (i: number) => 1_000_000n + BigInt(i) * 1_000n;

/** One measured row: operation, implementation, operations per second. */
export interface VoucherThroughput {
  op: string;
  impl: string;
  perSecond: number;
}

/** Runs `fn(i)` for about `SECONDS` (after a short warm-up) and returns operations per second. */
async function measure(SECONDS: number, fn: (i: number) => unknown | Promise<unknown>, isAsync: boolean): Promise<number> {
  const run = async (ms: number) => {
    let n = 0;
    const t0 = process.hrtime.bigint();
    const end = t0 + BigInt(Math.round(ms * 1e6));
    let now = t0;
    while (now < end) {
      // Check the clock every 64 calls: cheap next to a signature, negligible error.
      for (let k = 0; k < 64; k++, n++) {
        if (isAsync) await fn(n % N);
        else fn(n % N);
      }
      now = process.hrtime.bigint();
    }
    return n / (Number(now - t0) / 1e9);
  };
  await run(Math.min(300, SECONDS * 250));
  return run(SECONDS * 1000);
}

/**
 * Verified and signed vouchers per second, this project's native path vs viem, `seconds` per row, in this process
 * (one core). Every voucher is distinct; both verifiers are checked to accept them first.
 */
export async function measureVoucherThroughput(seconds = 2): Promise<VoucherThroughput[]> {
  if (!(seconds > 0)) throw new Error("seconds must be a positive number");
  const measure_ = (fn: (i: number) => unknown | Promise<unknown>, isAsync: boolean) => measure(seconds, fn, isAsync);
  const signer = new VoucherSigner(key, domain);
  const verifier = new VoucherVerifier(domain);
  const vouchers: Voucher[] = ids.map((id, i) => signer.sign(id, amountOf(i)));

  // Sanity: both verifiers accept every voucher (and the bench measures the accepting path).
  for (const v of vouchers.slice(0, 16)) {
    if (!verifier.verify(v, account.address)) throw new Error("VoucherVerifier rejected a valid voucher");
    const ok = await verifyTypedData({
      address: account.address,
      domain,
      types: VOUCHER_TYPES,
      primaryType: "Voucher",
      message: { channelId: v.channelId, cumulativeAmount: v.cumulativeAmount },
      signature: v.signature,
    });
    if (!ok) throw new Error("viem rejected a valid voucher");
  }

  const results: VoucherThroughput[] = [];
  results.push({
    op: "verify",
    impl: "VoucherVerifier (native secp256k1)",
    perSecond: await measure_((i) => {
      if (!verifier.verify(vouchers[i], account.address)) throw new Error("rejected");
    }, false),
  });
  results.push({
    op: "verify",
    impl: "viem verifyTypedData",
    perSecond: await measure_(async (i) => {
      const v = vouchers[i];
      const ok = await verifyTypedData({
        address: account.address,
        domain,
        types: VOUCHER_TYPES,
        primaryType: "Voucher",
        message: { channelId: v.channelId, cumulativeAmount: v.cumulativeAmount },
        signature: v.signature,
      });
      if (!ok) throw new Error("rejected");
    }, true),
  });
  results.push({ op: "sign", impl: "VoucherSigner (native secp256k1)", perSecond: await measure_((i) => signer.sign(ids[i], amountOf(i)), false) });
  results.push({
    op: "sign",
    impl: "viem signTypedData",
    perSecond: await measure_(
      (i) =>
        account.signTypedData({ domain, types: VOUCHER_TYPES, primaryType: "Voucher", message: { channelId: ids[i], cumulativeAmount: amountOf(i) } }),
      true,
    ),
  });

  return results;
}

async function main(): Promise<void> {
  const secondsArg = process.argv.indexOf("--seconds");
  const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 2;
  if (!(SECONDS > 0)) throw new Error("--seconds must be a positive number");
  const results = await measureVoucherThroughput(SECONDS);
  const baseline = (op: string) => results.find((r) => r.op === op && r.impl.startsWith("viem"))!.perSecond;
  const rows = results.map((r) => [
    r.op,
    r.impl,
    Math.round(r.perSecond).toLocaleString("en-US"),
    (1e6 / r.perSecond).toFixed(1),
    `${(r.perSecond / baseline(r.op)).toFixed(1)}×`,
  ]);
  const header = ["op", "implementation", "per second", "µs each", "vs viem"];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) => cells.map((x, c) => (c >= 2 ? x.padStart(widths[c]) : x.padEnd(widths[c]))).join("  ");
  console.log(`voucher throughput, one core, ${SECONDS} s per row (node ${process.version}, ${process.arch})`);
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(r));
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
