/**
 * Ending a channel: the cooperative close (a close request signed by the session key, sent to the provider, who
 * settles and refunds the rest at once), the payer's `requestClose` on chain (which starts the close delay), and
 * `withdraw` of the unspent rest once that delay has passed. A closing channel is excluded from new calls. A refund
 * the token refuses (paused, payer blacklisted) stays owed by the escrow: channels/owed.ts and collecting.ts.
 */
import type { Hex } from "viem";
import { CLOSE_PATH, encodeCloseRequest, escrowDomain, signCloseRequest } from "@paychan/protocol";
import { chainTime, revertName } from "../chain";
import { ClientError } from "../errors";
import type { WithdrawResult } from "../options";
import type { ClientSession } from "../session";
import type { ChannelRecord } from "../store";
import { requestCloseTx, withdrawTx } from "../transactions";
import type { ChannelBook } from "./book";

/** How `closeChannel` closes: `auto` tries the provider first, then the chain. */
export type CloseMode = "auto" | "cooperative" | "on-chain";

/** Starts the close delay on chain (payer). Returns when `withdraw` becomes possible. */
export async function requestClose(s: ClientSession, book: ChannelBook, channelId: Hex): Promise<{ closesAt: number; txHash?: Hex }> {
  const ch = book.record(channelId);
  await book.verify(ch, true);
  if (ch.status === "finalized" || ch.status === "missing") throw new ClientError("channel_closed", `channel ${ch.id} is ${ch.status}`);
  if (ch.status === "closing" && ch.closeMode === "on-chain" && ch.closesAt) return { closesAt: ch.closesAt };
  const { receipt, closesAt } = await requestCloseTx(s.ctx, ch.escrow, { channelId: ch.id, signer: ch.signer });
  ch.status = "closing";
  ch.closeMode = "on-chain";
  ch.closesAt = closesAt;
  book.exclude(ch);
  await s.persister.flush();
  return { closesAt, txHash: receipt.transactionHash };
}

/**
 * Closes a channel. `auto` (default) first asks the provider to close cooperatively (`POST /channel/close` at `url`,
 * default the channel's origin), and falls back to {@link requestClose} on chain when the provider does not.
 */
export async function closeChannel(
  s: ClientSession,
  book: ChannelBook,
  channelId: Hex,
  opts: { mode?: CloseMode; url?: string } = {},
): Promise<{ mode: "cooperative" | "on-chain"; closesAt?: number; txHash?: Hex }> {
  const ch = book.record(channelId);
  const mode = opts.mode ?? "auto";
  await book.verify(ch, true);
  if (ch.status === "finalized" || ch.status === "missing") throw new ClientError("channel_closed", `channel ${ch.id} is ${ch.status}`);
  const base = opts.url ?? ch.origin;
  if (mode !== "on-chain" && base) {
    try {
      await cooperativeClose(s, book, ch, base);
      return { mode: "cooperative" };
    } catch (e) {
      if (mode === "cooperative") throw e;
    }
  } else if (mode === "cooperative") {
    throw new ClientError("invalid_argument", `channel ${ch.id} has no known provider URL; pass one`);
  }
  const r = await requestClose(s, book, ch.id);
  return { mode: "on-chain", ...r };
}

/** Sends the session key's close request to the provider at `base`; throws `provider_failure` unless it accepts. */
async function cooperativeClose(s: ClientSession, book: ChannelBook, ch: ChannelRecord, base: string): Promise<void> {
  const signature = signCloseRequest(escrowDomain(s.chainId, ch.escrow), ch.id, s.sessionKey);
  const url = new URL(CLOSE_PATH, base).toString();
  let res: Response;
  try {
    res = await s.http(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: encodeCloseRequest({ channelId: ch.id, signature }),
    });
  } catch (e) {
    throw new ClientError("provider_failure", `the provider at ${base} could not be reached`, { cause: e });
  }
  const text = await res.text().catch(() => "");
  if (res.status !== 202 && res.status !== 200) {
    let code: string | undefined;
    try {
      code = JSON.parse(text).error;
    } catch {
      /* not JSON */
    }
    throw new ClientError("provider_failure", `the provider refused the cooperative close (HTTP ${res.status}${code ? `, ${code}` : ""})`, {
      status: res.status,
      serverCode: code,
    });
  }
  ch.status = "closing";
  ch.closeMode = "cooperative";
  book.exclude(ch);
  await s.persister.flush();
}

/**
 * After the close delay, refunds the unspent rest to the payer and finalizes the channel. `deferred` is true when
 * the escrow kept the refund owed instead of transferring it (token paused, payer refused): see `collect`.
 */
export async function withdraw(s: ClientSession, book: ChannelBook, channelId: Hex): Promise<WithdrawResult> {
  const ch = book.record(channelId);
  const oc = (await book.verify(ch, true))!;
  if (ch.status === "finalized") throw new ClientError("channel_closed", `channel ${ch.id} is already finalized`);
  if (ch.status === "missing") throw new ClientError("unknown_channel", `channel ${ch.id} is not on chain`);
  if (oc.closeRequestedAt === 0) throw new ClientError("close_not_requested", `channel ${ch.id} has no close request; call requestClose first`);
  const closesAt = oc.closeRequestedAt + oc.closeDelay;
  const now = await chainTime(s.ctx);
  if (now + 1 < closesAt) {
    throw new ClientError("close_pending", `channel ${ch.id} can be withdrawn in ${closesAt - now}s`, { details: `closesAt ${closesAt}` });
  }
  try {
    const { receipt, refund, deferred } = await withdrawTx(s.ctx, ch.escrow, ch.token, { channelId: ch.id, signer: ch.signer });
    ch.status = "finalized";
    await s.persister.flush();
    return { refund, deferred: deferred > 0n, txHash: receipt.transactionHash };
  } catch (e) {
    if ((e as ClientError).cause && revertName((e as ClientError).cause) === "CloseDelayNotElapsed") {
      throw new ClientError("close_pending", `channel ${ch.id} cannot be withdrawn yet`, { cause: e });
    }
    throw e;
  }
}
