/** Row mapping shared by the PostgreSQL channel and settlement stores. */
import type { Hex } from "viem";
import type { StoredChannel } from "../types";

/** A row of `channels` as pg returns it (numeric and bigint as text). */
export interface PgChannelRow {
  channel_id: string;
  payer: string;
  payee: string;
  token: string;
  signer: string;
  deposit: string;
  settled: string;
  close_delay: string;
  close_requested_at: string;
  closes_at: string;
  finalized: boolean;
  chain_block: string;
  accepted: string;
  accepted_signature: string | null;
  spent: string;
  reserved: string;
  floor: string;
  payer_close_requested_at: string;
  close_request_signature: string | null;
  created_at: string;
  updated_at: string;
  /** The row's version token (migration 5). */
  version: string;
}

/** Converts a `channels` row (pg text for numeric/bigint) to a {@link StoredChannel}. */
export function pgRowToChannel(r: PgChannelRow): StoredChannel {
  return {
    channelId: r.channel_id as Hex,
    payer: r.payer as Hex,
    payee: r.payee as Hex,
    token: r.token as Hex,
    signer: r.signer as Hex,
    deposit: BigInt(r.deposit),
    settled: BigInt(r.settled),
    closeDelay: Number(r.close_delay),
    closeRequestedAt: Number(r.close_requested_at),
    closesAt: Number(r.closes_at),
    finalized: r.finalized,
    block: BigInt(r.chain_block),
    accepted: BigInt(r.accepted),
    acceptedSignature: (r.accepted_signature as Hex | null) ?? null,
    spent: BigInt(r.spent),
    reserved: BigInt(r.reserved),
    floor: BigInt(r.floor),
    payerCloseRequestedAt: Number(r.payer_close_requested_at),
    closeRequestSignature: (r.close_request_signature as Hex | null) ?? null,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

