/** A `gasless_opens` row (same columns on SQLite and PostgreSQL) as a {@link GaslessOpen}. */
import { getAddress, type Hex } from "viem";
import type { GaslessOpen, GaslessOpenStatus } from "./open-types";

interface RawRow {
  id: number;
  channel_id: string;
  payer: string;
  payee: string;
  token: string;
  signer: string;
  amount: string;
  close_delay: number;
  salt: string;
  valid_after: string;
  valid_before: string;
  signature: string;
  fee: string;
  sender: string;
  sender_nonce: number;
  tx_hash: string | null;
  raw_tx: string | null;
  status: string;
  block_number: number | null;
  gas_used: string | null;
  error: string | null;
  created_at: number;
  updated_at: number;
}

/** A row of `gasless_opens` as either driver returns it (PostgreSQL gives bigints as strings). */
export type GaslessOpenRow = { [K in keyof RawRow]: RawRow[K] | string };

/** A row as a {@link GaslessOpen} (shared with the PostgreSQL store: same columns). */
export function toGaslessOpen(r: GaslessOpenRow): GaslessOpen {
  const big = (v: string | number | null) => (v === null ? null : BigInt(v));
  return {
    id: Number(r.id),
    channelId: String(r.channel_id) as Hex,
    payer: getAddress(String(r.payer)),
    payee: getAddress(String(r.payee)),
    token: getAddress(String(r.token)),
    signer: getAddress(String(r.signer)),
    amount: BigInt(r.amount),
    closeDelay: Number(r.close_delay),
    salt: String(r.salt) as Hex,
    validAfter: BigInt(r.valid_after),
    validBefore: BigInt(r.valid_before),
    signature: String(r.signature) as Hex,
    fee: BigInt(r.fee),
    sender: getAddress(String(r.sender)),
    senderNonce: Number(r.sender_nonce),
    txHash: r.tx_hash === null ? null : (String(r.tx_hash) as Hex),
    rawTx: r.raw_tx === null ? null : (String(r.raw_tx) as Hex),
    status: String(r.status) as GaslessOpenStatus,
    blockNumber: big(r.block_number),
    gasUsed: big(r.gas_used),
    error: r.error === null ? null : String(r.error),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

