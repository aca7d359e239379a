/**
 * Deployment records: `deployments/<chainId>.json`, written by the repository's deploy script, read by a provider
 * whose ESCROW_ADDRESS / TOKEN_ADDRESS are not set (DEPLOYMENTS_FILE names another file).
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { getAddress, isAddress, type Address } from "viem";

/** What `deployments/<chainId>.json` holds. */
export interface Deployment {
  chainId: number;
  /** The ChannelEscrow. */
  escrow: Address;
  /** The token channels hold. */
  token: Address;
  /** Block of the escrow's deployment: where event followers start. */
  blockNumber: number;
  deployer: Address;
  /** ISO 8601 time of the deployment. */
  deployedAt: string;
}

/** A deployment record that exists but cannot be used (not JSON, another chain, bad addresses). */
export class DeploymentFileError extends Error {
  override name = "DeploymentFileError";
}

/** The path of the record of `chainId` in `dir` (default `./deployments`). */
export function deploymentPath(chainId: number, dir: string = path.resolve("deployments")): string {
  return path.join(dir, `${chainId}.json`);
}

/** Reads the record at `file` for `chainId`: null when there is no such file, {@link DeploymentFileError} when it is malformed. */
export async function readDeploymentFile(file: string, chainId: number): Promise<Deployment | null> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
  let d: Partial<Deployment>;
  try {
    d = JSON.parse(text);
  } catch {
    throw new DeploymentFileError(`${file} is not JSON`);
  }
  if (
    d.chainId !== chainId ||
    typeof d.escrow !== "string" ||
    !isAddress(d.escrow) ||
    typeof d.token !== "string" ||
    !isAddress(d.token) ||
    !Number.isSafeInteger(d.blockNumber)
  ) {
    throw new DeploymentFileError(`${file} is not a deployment record of chain ${chainId}`);
  }
  return { ...(d as Deployment), escrow: getAddress(d.escrow), token: getAddress(d.token) };
}

/** The record of `chainId`: `file` when given (DEPLOYMENTS_FILE), else `./deployments/<chainId>.json`. */
export function readDeployment(chainId: number, file?: string): Promise<Deployment | null> {
  return readDeploymentFile(file ?? deploymentPath(chainId), chainId);
}
