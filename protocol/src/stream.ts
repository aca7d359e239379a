/**
 * Streamed responses paid per unit (docs/protocol.md § 5.10): the offer terms (`extra.stream`), the two payment
 * events a server inserts into a paid event stream (`payment-need-voucher`, `payment-receipt`), the answer to a
 * top-up side request, and the SSE framing (sse.ts) they travel in. The one definition for server and client.
 */
import type { Hex } from "viem";
import { formatWireAmount, parseWireAmount } from "./amounts";
import { bad, bytes32, fromBase64Json, obj, str, toBase64Json, uint } from "./decode";
import { HEADER_PAYMENT_RESPONSE, MAX_PAYMENT_REQUIRED_BYTES } from "./envelope";
import { formatSseFrame } from "./sse";
import { parsePaymentResponse, paymentResponseToJson, type PaymentResponse } from "./wire";

export * from "./stream-terms";
export * from "./sse";

/** The event asking the client for a higher voucher. */
export const STREAM_EVENT_NEED_VOUCHER = "payment-need-voucher" as const;
/** The last event of a stream the server ends: its final receipt. */
export const STREAM_EVENT_RECEIPT = "payment-receipt" as const;
/** The names of the payment events; a handler's own events never use them. */
export const STREAM_PAYMENT_EVENTS: readonly string[] = [STREAM_EVENT_NEED_VOUCHER, STREAM_EVENT_RECEIPT];
/** The trailer carrying the final receipt (the § 5.5 header, base64 envelope of § 5.1). */
export const STREAM_RECEIPT_TRAILER = HEADER_PAYMENT_RESPONSE;
/** Largest payment event `data` accepted by the parsers (characters). */
export const MAX_STREAM_EVENT_DATA = 16_384;

/** Why a stream ended, as its final receipt says. */
export const STREAM_END_REASONS = ["complete", "top_up_timeout", "client_closed", "handler_error", "server_closing"] as const;
export type StreamEndReason = (typeof STREAM_END_REASONS)[number];

/** A stream id: opaque, server-chosen, 32 to 64 lowercase hex digits (≥ 128 random bits). */
const STREAM_ID = /^[0-9a-f]{32,64}$/;
/** A top-up url: a path on the stream's origin, or an absolute http(s) URL. */
const URL_FORM = /^(\/(?!\/)|https?:\/\/)[\x21-\x7e]*$/;
/** Latest `deadline` accepted (unix ms; year 2286). */
const MAX_DEADLINE = 9_999_999_999_999;

/** The `data` of a `payment-need-voucher` event. */
export interface NeedVoucherEvent {
  channelId: Hex;
  /** The stream's id. */
  stream: string;
  /** Where to POST the top-up voucher: a path on the same origin, or an absolute URL. */
  url: string;
  /** The top-up asked (atomic units): the stream's reservation grows by this much when a voucher is accepted. */
  amount: bigint;
  /** The stream's reservation now (initial + accepted top-ups). */
  reserved: bigint;
  /** What the stream has charged so far (delivered units × unitPrice). */
  delivered: bigint;
  /** The server's hint: its spent + reserved + amount on the channel. Never a reason to sign (§ 7.1). */
  cumulativeAmount: bigint;
  /** Unix ms by which a top-up must be accepted, or the stream ends once its reservation is used up. */
  deadline: number;
}

/** `extra.stream` of a stream's final receipt. */
export interface StreamReceiptInfo {
  id: string;
  /** Delivered units. */
  units: bigint;
  reason: StreamEndReason;
}

/** The final receipt of a stream (`payment-receipt` event and `PAYMENT-RESPONSE` trailer): amount = the stream's charge. */
export interface StreamReceipt extends PaymentResponse {
  extra: PaymentResponse["extra"] & { stream: StreamReceiptInfo };
}

/** `extra.stream` of the answer to a top-up side request. */
export interface TopUpInfo {
  id: string;
  /** The stream's reservation after this top-up. */
  reserved: bigint;
  /** What the stream had charged when the top-up was accepted. */
  delivered: bigint;
}

/** The `PAYMENT-RESPONSE` of an accepted top-up: amount = the top-up reserved, extra = channel accounting + stream. */
export interface TopUpResponse extends PaymentResponse {
  extra: PaymentResponse["extra"] & { stream: TopUpInfo };
}

// ------------------------------------------------------------------ field checks

/** Whether `v` is a well-formed stream id. */
export function isStreamId(v: unknown): v is string {
  return typeof v === "string" && STREAM_ID.test(v);
}

function streamId(v: unknown, field: string): string {
  if (!isStreamId(v)) bad(`${field} must be 32 to 64 lowercase hex digits`);
  return v as string;
}

function parseJsonData(data: unknown, name: string): unknown {
  if (typeof data !== "string") bad(`${name} data must be a string`);
  const s = data as string;
  if (s.length > MAX_STREAM_EVENT_DATA) bad(`${name} data is larger than ${MAX_STREAM_EVENT_DATA} characters`);
  try {
    return JSON.parse(s);
  } catch {
    bad(`${name} data is not JSON`);
  }
}

// ------------------------------------------------------------------ payment-need-voucher

/** A `payment-need-voucher` event's data in its JSON form. */
export function needVoucherToJson(e: NeedVoucherEvent): Record<string, unknown> {
  return {
    channelId: e.channelId,
    stream: e.stream,
    url: e.url,
    amount: formatWireAmount(e.amount),
    reserved: formatWireAmount(e.reserved),
    delivered: formatWireAmount(e.delivered),
    cumulativeAmount: formatWireAmount(e.cumulativeAmount),
    deadline: e.deadline,
  };
}

/** Checks a `payment-need-voucher` event's data (JSON value; strict, `invalid_payload` on any failure). */
export function parseNeedVoucher(v: unknown): NeedVoucherEvent {
  const o = obj(v, STREAM_EVENT_NEED_VOUCHER);
  const url = str(o.url, `${STREAM_EVENT_NEED_VOUCHER}.url`, 2048);
  if (!URL_FORM.test(url)) bad(`${STREAM_EVENT_NEED_VOUCHER}.url must be a path or an http(s) URL`);
  const amount = parseWireAmount(o.amount, `${STREAM_EVENT_NEED_VOUCHER}.amount`);
  if (amount === 0n) bad(`${STREAM_EVENT_NEED_VOUCHER}.amount must be above 0`);
  return {
    channelId: bytes32(o.channelId, `${STREAM_EVENT_NEED_VOUCHER}.channelId`),
    stream: streamId(o.stream, `${STREAM_EVENT_NEED_VOUCHER}.stream`),
    url,
    amount,
    reserved: parseWireAmount(o.reserved, `${STREAM_EVENT_NEED_VOUCHER}.reserved`),
    delivered: parseWireAmount(o.delivered, `${STREAM_EVENT_NEED_VOUCHER}.delivered`),
    cumulativeAmount: parseWireAmount(o.cumulativeAmount, `${STREAM_EVENT_NEED_VOUCHER}.cumulativeAmount`),
    deadline: uint(o.deadline, `${STREAM_EVENT_NEED_VOUCHER}.deadline`, MAX_DEADLINE),
  };
}

/** Parses the `data` string of a `payment-need-voucher` frame. */
export function decodeNeedVoucher(data: string): NeedVoucherEvent {
  return parseNeedVoucher(parseJsonData(data, STREAM_EVENT_NEED_VOUCHER));
}

/** The SSE frame of a `payment-need-voucher` event (one `data:` line of JSON). */
export function formatNeedVoucherFrame(e: NeedVoucherEvent): string {
  return formatSseFrame({ event: STREAM_EVENT_NEED_VOUCHER, data: JSON.stringify(needVoucherToJson(e)) });
}

// ------------------------------------------------------------------ payment-receipt

/** A stream's final receipt in its JSON form (the § 5.5 receipt plus `extra.stream`). */
export function streamReceiptToJson(r: StreamReceipt): Record<string, unknown> {
  const json = paymentResponseToJson(r);
  (json.extra as Record<string, unknown>).stream = { id: r.extra.stream.id, units: formatWireAmount(r.extra.stream.units), reason: r.extra.stream.reason };
  return json;
}

/** Checks a stream's final receipt (JSON value; strict). */
export function parseStreamReceipt(v: unknown): StreamReceipt {
  const base = parsePaymentResponse(v);
  const s = obj(obj((v as Record<string, unknown>).extra, "extra").stream, "extra.stream");
  const reason = s.reason;
  if (typeof reason !== "string" || !(STREAM_END_REASONS as readonly string[]).includes(reason)) bad("extra.stream.reason is unknown");
  const stream: StreamReceiptInfo = {
    id: streamId(s.id, "extra.stream.id"),
    units: parseWireAmount(s.units, "extra.stream.units"),
    reason: reason as StreamEndReason,
  };
  return { ...base, extra: { ...base.extra, stream } };
}

/** Parses the `data` string of a `payment-receipt` frame. */
export function decodeStreamReceipt(data: string): StreamReceipt {
  return parseStreamReceipt(parseJsonData(data, STREAM_EVENT_RECEIPT));
}

/** The SSE frame of a `payment-receipt` event (one `data:` line of JSON). */
export function formatStreamReceiptFrame(r: StreamReceipt): string {
  return formatSseFrame({ event: STREAM_EVENT_RECEIPT, data: JSON.stringify(streamReceiptToJson(r)) });
}

/** The `PAYMENT-RESPONSE` trailer value of a stream's final receipt (base64 envelope of § 5.1). */
export function encodeStreamReceiptTrailer(r: StreamReceipt): string {
  return toBase64Json(streamReceiptToJson(r));
}

/** Decodes a `PAYMENT-RESPONSE` trailer of a stream. */
export function decodeStreamReceiptTrailer(value: unknown): StreamReceipt {
  return parseStreamReceipt(fromBase64Json(value, MAX_PAYMENT_REQUIRED_BYTES, STREAM_RECEIPT_TRAILER));
}

// ------------------------------------------------------------------ top-up answer

/** A top-up answer in its JSON form. */
export function topUpResponseToJson(r: TopUpResponse): Record<string, unknown> {
  const json = paymentResponseToJson(r);
  (json.extra as Record<string, unknown>).stream = {
    id: r.extra.stream.id,
    reserved: formatWireAmount(r.extra.stream.reserved),
    delivered: formatWireAmount(r.extra.stream.delivered),
  };
  return json;
}

/** Encodes the `PAYMENT-RESPONSE` header of an accepted top-up. */
export function encodeTopUpResponse(r: TopUpResponse): string {
  return toBase64Json(topUpResponseToJson(r));
}

/** Checks a top-up answer (JSON value; strict). */
export function parseTopUpResponse(v: unknown): TopUpResponse {
  const base = parsePaymentResponse(v);
  const s = obj(obj((v as Record<string, unknown>).extra, "extra").stream, "extra.stream");
  const stream: TopUpInfo = {
    id: streamId(s.id, "extra.stream.id"),
    reserved: parseWireAmount(s.reserved, "extra.stream.reserved"),
    delivered: parseWireAmount(s.delivered, "extra.stream.delivered"),
  };
  return { ...base, extra: { ...base.extra, stream } };
}

/** Decodes the `PAYMENT-RESPONSE` header of an accepted top-up. */
export function decodeTopUpResponse(header: unknown): TopUpResponse {
  return parseTopUpResponse(fromBase64Json(header, MAX_PAYMENT_REQUIRED_BYTES, HEADER_PAYMENT_RESPONSE));
}
