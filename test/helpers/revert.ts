/**
 * Asserting custom-error reverts with viem, without hardhat-chai-matchers.
 *
 * viem reports a decoded revert as `ContractFunctionRevertedError` (`data.errorName`, `data.args`) when the
 * RPC error carries the revert data where it looks. Through Hardhat's in-process provider the data usually
 * sits deeper (`SolidityError.data` under `UnknownRpcError`), so {@link decodeRevert} also walks the cause chain
 * for raw revert data and decodes it against the errors of every contract in this project (a token error
 * bubbling up through the escrow is decoded too).
 */
import hre from "hardhat";
import { expect } from "chai";
import { BaseError, ContractFunctionRevertedError, decodeErrorResult, isAddress, isHex, type Abi, type Hex } from "viem";

/** A decoded revert: the custom error's name and arguments (`Error`/`Panic` for string and panic reverts). */
export interface DecodedRevert {
  errorName: string;
  args: readonly unknown[];
  /** The raw revert data, when known. */
  data?: Hex;
}

const CONTRACTS = ["ChannelEscrow", "MockUSDC", "ERC1271Wallet", "FeeOnTransferToken", "ReentrantToken", "HookToken"];
let errorAbi: Abi | undefined;

/** Every custom error declared by (or inherited into) the project's contracts, deduplicated by signature. */
export function projectErrorAbi(): Abi {
  if (errorAbi) return errorAbi;
  const seen = new Map<string, Abi[number]>();
  for (const name of CONTRACTS) {
    for (const item of hre.artifacts.readArtifactSync(name).abi as Abi) {
      if (item.type !== "error") continue;
      const sig = `${item.name}(${item.inputs.map((i) => i.type).join(",")})`;
      if (!seen.has(sig)) seen.set(sig, item);
    }
  }
  errorAbi = [...seen.values()];
  return errorAbi;
}

/** Decodes raw revert data (`0x` + selector + arguments) against {@link projectErrorAbi}. */
export function decodeRevertData(data: Hex): DecodedRevert {
  if (data === "0x") return { errorName: "<empty>", args: [], data };
  const d = decodeErrorResult({ abi: projectErrorAbi(), data });
  return { errorName: d.errorName, args: (d.args ?? []) as readonly unknown[], data };
}

/** Finds the revert in a thrown error (viem error, Hardhat provider error, or anything with a `cause` chain). */
export function decodeRevert(err: unknown): DecodedRevert | null {
  if (err instanceof BaseError) {
    const reverted = err.walk((e) => e instanceof ContractFunctionRevertedError) as ContractFunctionRevertedError | null;
    if (reverted?.data?.errorName) {
      return { errorName: reverted.data.errorName, args: (reverted.data.args ?? []) as readonly unknown[], data: reverted.raw };
    }
  }
  for (let e: any = err, depth = 0; e && depth < 16; e = e.cause, depth++) {
    if (typeof e.data === "string" && isHex(e.data)) return decodeRevertData(e.data);
    if (e.data && typeof e.data === "object" && typeof e.data.data === "string" && isHex(e.data.data)) {
      return decodeRevertData(e.data.data);
    }
    if (e instanceof ContractFunctionRevertedError && e.raw) return decodeRevertData(e.raw);
  }
  return null;
}

/** Normalizes values for comparison: addresses lowercase, numbers to bigint, arrays/objects recursively. */
function normalize(v: unknown): unknown {
  if (typeof v === "string" && isAddress(v, { strict: false })) return v.toLowerCase();
  if (typeof v === "string" && isHex(v)) return v.toLowerCase();
  if (typeof v === "number") return BigInt(v);
  if (Array.isArray(v)) return v.map(normalize);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]));
  return v;
}

/**
 * Awaits `action` and asserts it reverted with the custom error `errorName` and, when given, exactly `args`
 * (addresses compared case-insensitively, numbers as bigints). Returns the decoded revert.
 */
export async function expectRevert(
  action: Promise<unknown> | (() => Promise<unknown>),
  errorName: string,
  args?: readonly unknown[],
): Promise<DecodedRevert> {
  let thrown: unknown;
  try {
    await (typeof action === "function" ? action() : action);
  } catch (e) {
    thrown = e;
  }
  if (thrown === undefined) expect.fail(`expected a revert with ${errorName}, but the call succeeded`);
  const decoded = decodeRevert(thrown);
  if (!decoded) throw new Error(`expected a revert with ${errorName}, got an error without revert data: ${String(thrown)}`);
  expect(decoded.errorName, `revert error name (args ${fmt(decoded.args)})`).to.equal(errorName);
  if (args !== undefined) {
    expect(normalize(decoded.args), `arguments of ${errorName}`).to.deep.equal(normalize(args));
  }
  return decoded;
}

function fmt(args: readonly unknown[]): string {
  return JSON.stringify(args, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}
