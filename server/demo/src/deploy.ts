/**
 * Deploys the escrow (and, on local networks, a MockUSDC) with viem and the committed creation bytecode, and records
 * the result in `deployments/<chainId>.json`. No Hardhat runtime: usable from `scripts/deploy.ts`, from the server's
 * `npm start`, and from tests.
 */
import { mkdir, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  createPublicClient,
  createWalletClient,
  defineChain,
  getAddress,
  http,
  isAddress,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { channelEscrowAbi, escrowDomain, isBytes32Hex } from "@paychan/protocol";
import { deploymentPath as deploymentPathIn, DeploymentFileError, LOCAL_CHAIN_IDS, readDeploymentFile, type Deployment } from "@paychan/server";
import { HARDHAT_ACCOUNT_0_KEY } from "./accounts";
import { channelEscrowBytecode, mockUsdcBytecode } from "./contracts/bytecode";
import { mockUsdcAbi } from "./contracts/mockUsdc";

export type { Deployment } from "@paychan/server";
/** The default RPC endpoint: a local Hardhat node. */
export const DEFAULT_RPC_URL = "http://127.0.0.1:8545";
/** Chain ids where a MockUSDC is deployed without being asked (Hardhat, Ganache/Geth dev). */
export { LOCAL_CHAIN_IDS } from "@paychan/server";
/** Where deployment records go by default: `<repo>/deployments` (this file is `server/demo/{src,dist}/deploy`). */
export const DEFAULT_DEPLOYMENTS_DIR = path.resolve(__dirname, "..", "..", "..", "deployments");

export interface DeployOptions {
  /** JSON-RPC endpoint (default {@link DEFAULT_RPC_URL}). */
  rpcUrl?: string;
  /** Deployer key (default Hardhat's account #0, only sensible on a local node). */
  privateKey?: Hex;
  /** Use this existing token instead of deploying a MockUSDC. */
  tokenAddress?: Address;
  /** Deploy a MockUSDC even on a non-local chain (a testnet without USDC). */
  mockToken?: boolean;
  /** Directory of the `<chainId>.json` records (default {@link DEFAULT_DEPLOYMENTS_DIR}); `null` writes nothing. */
  deploymentsDir?: string | null;
  /** Progress messages (default: none). */
  log?: (message: string) => void;
}

/** A deployment problem with a message fit for an operator (bad option, no token, failed transaction). */
export class DeployError extends Error {
  override name = "DeployError";
}

/** The path of the deployment record of `chainId`. */
export function deploymentPath(chainId: number, dir: string = DEFAULT_DEPLOYMENTS_DIR): string {
  return deploymentPathIn(chainId, dir);
}

/** Reads `<dir>/<chainId>.json`, or null when there is none. Throws {@link DeployError} when it is malformed. */
export async function readDeployment(chainId: number, dir: string = DEFAULT_DEPLOYMENTS_DIR): Promise<Deployment | null> {
  try {
    return await readDeploymentFile(deploymentPath(chainId, dir), chainId);
  } catch (e) {
    if (e instanceof DeploymentFileError) throw new DeployError(e.message, { cause: e });
    throw e;
  }
}

/** Whether `deployment`'s contracts are live on the chain behind `client`: code at both addresses, and the escrow's domain. */
export async function isDeploymentLive(client: PublicClient, deployment: Deployment): Promise<boolean> {
  const [escrowCode, tokenCode] = await Promise.all([client.getCode({ address: deployment.escrow }), client.getCode({ address: deployment.token })]);
  if (!escrowCode || escrowCode === "0x" || !tokenCode || tokenCode === "0x") return false;
  try {
    const [, name, version, chainId, verifyingContract] = await client.readContract({
      address: deployment.escrow,
      abi: channelEscrowAbi,
      functionName: "eip712Domain",
    });
    const expected = escrowDomain(deployment.chainId, getAddress(deployment.escrow));
    return name === expected.name && version === expected.version && Number(chainId) === expected.chainId && getAddress(verifyingContract) === expected.verifyingContract;
  } catch {
    return false;
  }
}

function parseKey(key: string): Hex {
  if (!isBytes32Hex(key)) throw new DeployError("the deployer private key must be 32 bytes of 0x-hex");
  return key as Hex;
}

/**
 * Deploys ChannelEscrow, plus MockUSDC when on a local chain (31337, 1337) or when `mockToken` is set and no
 * `tokenAddress` is given, waits for both receipts, and writes `deployments/<chainId>.json` (atomically).
 * On a non-local chain without `tokenAddress` and without `mockToken` it refuses (a real network needs a real token).
 */
export async function deployContracts(options: DeployOptions = {}): Promise<Deployment> {
  const log = options.log ?? (() => {});
  const rpcUrl = options.rpcUrl ?? DEFAULT_RPC_URL;
  const account = privateKeyToAccount(parseKey(options.privateKey ?? HARDHAT_ACCOUNT_0_KEY));
  const transport = http(rpcUrl, { retryCount: 0 });
  const probe = createPublicClient({ transport });
  let chainId: number;
  try {
    chainId = await probe.getChainId();
  } catch (e) {
    throw new DeployError(`cannot reach the JSON-RPC endpoint ${rpcUrl}: ${(e as Error).message.split("\n")[0]}`);
  }
  const chain = defineChain({
    id: chainId,
    name: `chain ${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
  const publicClient = createPublicClient({ chain, transport });
  const wallet = createWalletClient({ account, chain, transport });
  const local = LOCAL_CHAIN_IDS.includes(chainId);

  let token: Address | undefined;
  if (options.tokenAddress !== undefined) {
    if (!isAddress(options.tokenAddress)) throw new DeployError(`TOKEN_ADDRESS ${options.tokenAddress} is not an address`);
    token = getAddress(options.tokenAddress);
    const code = await publicClient.getCode({ address: token });
    if (!code || code === "0x") throw new DeployError(`no contract at TOKEN_ADDRESS ${token} on chain ${chainId}`);
  } else if (!local && !options.mockToken) {
    throw new DeployError(`chain ${chainId} is not a local network: set TOKEN_ADDRESS (e.g. USDC) or pass --mock-token`);
  }

  log(`deploying to chain ${chainId} at ${rpcUrl} from ${account.address}`);
  const deploy = async (label: string, abi: typeof channelEscrowAbi | typeof mockUsdcAbi, bytecode: string) => {
    const hash = await wallet.deployContract({ abi, bytecode: bytecode as Hex });
    const receipt = await publicClient.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success" || !receipt.contractAddress) throw new DeployError(`${label} deployment ${hash} failed`);
    const address = getAddress(receipt.contractAddress);
    log(`${label}: ${address} (block ${receipt.blockNumber}, gas ${receipt.gasUsed})`);
    return { address, blockNumber: receipt.blockNumber };
  };

  // The token first: the escrow's block is then the first block any channel event can be in.
  if (!token) token = (await deploy("MockUSDC", mockUsdcAbi, mockUsdcBytecode)).address;
  else log(`token: ${token} (existing)`);
  const escrow = await deploy("ChannelEscrow", channelEscrowAbi, channelEscrowBytecode);

  const deployment: Deployment = {
    chainId,
    escrow: escrow.address,
    token,
    blockNumber: Number(escrow.blockNumber),
    deployer: account.address,
    deployedAt: new Date().toISOString(),
  };
  if (options.deploymentsDir !== null) {
    const file = await writeDeployment(deployment, options.deploymentsDir ?? DEFAULT_DEPLOYMENTS_DIR);
    log(`wrote ${file}`);
  }
  return deployment;
}

/** Writes the record to `<dir>/<chainId>.json` (write to a temporary file, then rename). Returns the path. */
export async function writeDeployment(deployment: Deployment, dir: string = DEFAULT_DEPLOYMENTS_DIR): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = deploymentPath(deployment.chainId, dir);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(deployment, null, 2)}\n`);
  await rename(tmp, file);
  return file;
}

/**
 * The recorded deployment of the chain behind `rpcUrl` when its contracts are live there, else a new one
 * ({@link deployContracts}). What a local `npm start` wants: deploy once per fresh node, reuse afterwards.
 * A recorded deployment whose token differs from `tokenAddress` (when given) is not reused.
 */
export async function ensureDeployment(options: DeployOptions = {}): Promise<Deployment & { reused: boolean }> {
  const rpcUrl = options.rpcUrl ?? DEFAULT_RPC_URL;
  const client = createPublicClient({ transport: http(rpcUrl, { retryCount: 0 }) });
  let chainId: number;
  try {
    chainId = await client.getChainId();
  } catch (e) {
    throw new DeployError(`cannot reach the JSON-RPC endpoint ${rpcUrl}: ${(e as Error).message.split("\n")[0]}`);
  }
  const dir = options.deploymentsDir === undefined ? DEFAULT_DEPLOYMENTS_DIR : options.deploymentsDir;
  if (dir !== null) {
    const existing = await readDeployment(chainId, dir);
    const tokenMatches = !existing || !options.tokenAddress || getAddress(options.tokenAddress) === getAddress(existing.token);
    if (existing && tokenMatches && (await isDeploymentLive(client as PublicClient, existing))) return { ...existing, reused: true };
  }
  return { ...(await deployContracts(options)), reused: false };
}
