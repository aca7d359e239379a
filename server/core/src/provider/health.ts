/** What `/healthz` reports: the chain (reachable, head, follower lag) and the store (writable). */
import type { Address } from "viem";
import type { ChainReader } from "../chain/reader";
import type { EventFollower } from "../chain/follower";
import type { ChannelStore } from "../store/types";
import { firstLine } from "./errors";
import type { ProviderHealth } from "./types";

/** Checks the chain and the store now; `ok` is false when either cannot be used. */
export async function checkHealth(p: {
  ids: { chainId: number; escrow: Address; token: Address; payee: Address };
  reader: ChainReader;
  follower: EventFollower;
  store: ChannelStore;
}): Promise<ProviderHealth> {
  const body: Record<string, unknown> = { ...p.ids };
  let ok = true;
  const cursor = p.follower.cursor === null ? null : Number(p.follower.cursor);
  try {
    const head = await p.reader.blockNumber();
    const lag = p.follower.lag();
    body.chain = { reachable: true, head: Number(head), cursor, lag: lag === null ? null : Number(lag), lastError: p.follower.lastError };
  } catch (e) {
    ok = false;
    body.chain = { reachable: false, error: firstLine(e), cursor };
  }
  try {
    await p.store.ping();
    body.store = { kind: p.store.kind, writable: true };
  } catch (e) {
    ok = false;
    body.store = { kind: p.store.kind, writable: false, error: firstLine(e) };
  }
  body.status = ok ? "ok" : "degraded";
  return { ok, body };
}
