/**
 * The paid streams of one provider process (docs/protocol.md § 5.10): opens a stream on a committed reservation, answers
 * the top-up side requests (checks in the order of § 5.10), sweeps the stream reservations of dead processes (at start
 * and every half lease, on every replica), and ends every live stream when the provider closes.
 */
import type { Logger } from "pino";
import {
  BaseError,
  decodePaymentSignature,
  encodeTopUpResponse,
  HEADER_PAYMENT_RESPONSE,
  topUpResponseToJson,
  type Network,
  type PaymentPayload,
  type TopUpResponse,
} from "@paychan/protocol";
import type { Charge, PaymentCore, PaymentObserver, PaymentRequest } from "../payments/core";
import { problem, PROBLEM_CONTENT_TYPE, type ServerErrorCode } from "../payments/errors";
import type { ChannelStore } from "../store/types";
import type { StreamStore } from "../store/stream-types";
import type { StreamHost } from "./host";
import { PaidStream, type StreamSink } from "./live";
import type { StreamObserver } from "./metrics";
import { STREAM_LEASE_MIN_MS, streamRoute, type StreamRoute, type StreamRouteOptions } from "./options";

/** The default path prefix of top-up side requests: `POST /channel/streams/<id>/voucher`. */
export const STREAM_VOUCHER_PREFIX = "/channel/streams";

export interface StreamRegistryOptions {
  core: PaymentCore;
  store: ChannelStore;
  streams: StreamStore;
  logger?: Logger;
  observer?: StreamObserver;
  /** Path prefix of the top-up requests (default {@link STREAM_VOUCHER_PREFIX}). */
  prefix?: string;
  /** How often the sweeper looks for dead streams, ms (default half the shortest lease, 5 s). */
  sweepIntervalMs?: number;
}

/** An HTTP answer of the side request. */
export interface TopUpAnswer {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

/** The streams of this process. */
export class StreamRegistry implements StreamHost {
  readonly network: Network;
  readonly store: ChannelStore;
  readonly streams: StreamStore;
  readonly logger?: Logger;
  readonly observer?: StreamObserver;
  readonly paymentObserver?: PaymentObserver;
  readonly prefix: string;
  private readonly core: PaymentCore;
  private readonly live = new Map<string, PaidStream>();
  private sweeper: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly o: StreamRegistryOptions) {
    this.core = o.core;
    this.network = o.core.network;
    this.store = o.store;
    this.streams = o.streams;
    this.logger = o.logger;
    this.observer = o.observer;
    this.paymentObserver = o.core.observer;
    this.prefix = (o.prefix ?? STREAM_VOUCHER_PREFIX).replace(/\/$/, "");
  }

  /** Live streams in this process. */
  get size(): number {
    return this.live.size;
  }

  /** Declares a streamed route: checks its options; its reserve and top-up size the voucher window. */
  route(o: StreamRouteOptions): StreamRoute {
    const r = streamRoute(o);
    this.core.registerPrice(r.reserve);
    this.core.registerPrice(r.topUp);
    return r;
  }

  voucherPath(id: string): string {
    return `${this.prefix}/${id}/voucher`;
  }

  remove(stream: { readonly id: string }): void {
    this.live.delete(stream.id);
  }

  /** A live stream by id. */
  get(id: string): PaidStream | undefined {
    return this.live.get(id);
  }

  /**
   * Opens the stream of a committed reservation (a `stream` route's {@link Charge}). Null when its checkpoint could not
   * be written (the reservation is then released, the adapter answers 503).
   */
  async open(route: StreamRoute, charge: Charge, sink: StreamSink): Promise<PaidStream | null> {
    const s = new PaidStream(this, sink, {
      route,
      channelId: charge.channelId,
      payer: charge.payer,
      voucher: charge.voucher,
      reserved: charge.reserved,
      fee: charge.fee,
      channel: charge.committed,
    });
    if (this.closed || !(await s.start())) {
      try {
        await this.store.finishReservation(charge.channelId, charge.voucher, charge.fee);
      } catch (e) {
        this.logger?.error({ err: (e as Error).message, channelId: charge.channelId }, "could not release a stream's reservation");
      }
      return null;
    }
    this.live.set(s.id, s);
    this.observer?.opened();
    return s;
  }

  private refuse(code: ServerErrorCode, detail: string): TopUpAnswer {
    this.observer?.topUp(code);
    const body = problem(code, detail, "endpoint");
    const headers: Record<string, string> = { "content-type": PROBLEM_CONTENT_TYPE, "cache-control": "no-store" };
    if (code === "upstream_unavailable" || code === "overloaded") headers["retry-after"] = "2";
    return { status: body.status, headers, body };
  }

  /**
   * The top-up side request `POST <prefix>/<id>/voucher` (docs/protocol.md § 5.10): the header, the stream (live in
   * this process), its channel, then the § 6 rule with charge = the stream's topUp in one store transaction. A refusal
   * never affects the stream. Never throws.
   */
  async topUp(id: string, req: PaymentRequest): Promise<TopUpAnswer> {
    try {
      return await this.topUpInner(id, req);
    } catch (e) {
      this.logger?.error({ err: (e as Error).message, stream: { id } }, "top-up failed unexpectedly");
      return this.refuse("upstream_unavailable", "the top-up could not be checked; try again");
    }
  }

  private async topUpInner(id: string, req: PaymentRequest): Promise<TopUpAnswer> {
    const raw = req.headers["payment-signature"];
    if (raw === undefined) return this.refuse("payment_required", "a top-up needs a PAYMENT-SIGNATURE header (scheme: channel)");
    if (Array.isArray(raw)) return this.refuse("invalid_payload", "PAYMENT-SIGNATURE must appear once");
    let payment: PaymentPayload;
    try {
      payment = decodePaymentSignature(raw);
    } catch (e) {
      if (e instanceof BaseError) return this.refuse(e.code as ServerErrorCode, e.shortMessage);
      return this.refuse("invalid_payload", "PAYMENT-SIGNATURE could not be decoded");
    }
    const o = this.core.options;
    const a = payment.accepted;
    if (a.network !== this.network) return this.refuse("network_mismatch", `this server takes payments on ${this.network}, not ${a.network}`);
    if (a.asset.toLowerCase() !== o.token.toLowerCase() || a.payTo.toLowerCase() !== o.payee.toLowerCase() || a.extra.escrow.toLowerCase() !== o.escrow.toLowerCase()) {
      return this.refuse("requirements_mismatch", "asset, payTo or escrow differ from this server's terms");
    }
    const stream = this.live.get(id);
    if (!stream || stream.ended) return this.refuse("stream_not_found", "no stream with that id is live here (it ended, or another server holds it)");
    if (payment.payload.channelId.toLowerCase() !== stream.channelId.toLowerCase()) {
      return this.refuse("stream_channel_mismatch", "the voucher names another channel than the stream's");
    }
    const checked = await this.core.checkVoucher(payment, undefined, undefined, req.source, "endpoint");
    if (checked.kind === "reply") {
      this.observer?.topUp(checked.code);
      return { status: checked.status, headers: checked.headers, body: checked.body };
    }
    const route = stream.route;
    const at = Date.now();
    let result;
    try {
      result = await this.streams.topUp({
        chain: checked.chain,
        amount: payment.payload.cumulativeAmount,
        signature: payment.payload.signature,
        topUp: route.topUp,
        window: this.core.window(route.topUp),
        channelId: stream.channelId,
        voucher: stream.voucherKey,
        charged: stream.charged,
        at,
        leaseMs: route.leaseMs,
      });
    } catch (e) {
      this.logger?.error({ err: (e as Error).message, stream: { id } }, "store failed while accepting a top-up");
      return this.refuse("upstream_unavailable", "the payment store is unavailable; try again");
    }
    if (!result.ok) {
      const detail =
        result.code === "stream_not_found"
          ? "the stream ended"
          : result.code === "insufficient_voucher"
            ? `voucher ${payment.payload.cumulativeAmount} does not cover spent + reserved + top-up ${route.topUp}`
            : `the top-up voucher was refused (${result.code})`;
      return this.refuse(result.code, detail);
    }
    stream.toppedUp(result.reserved, result.channel);
    this.observer?.topUp("accepted");
    const c = result.channel;
    const spent = c.spent + c.reserved;
    const answer: TopUpResponse = {
      success: true,
      transaction: "",
      network: this.network,
      payer: stream.payer,
      amount: route.topUp,
      extra: {
        channelId: stream.channelId,
        accepted: c.accepted,
        spent,
        deposit: c.deposit,
        remaining: c.deposit > spent ? c.deposit - spent : 0n,
        stream: { id: stream.id, reserved: stream.reserved, delivered: stream.charged },
      },
    };
    this.logger?.debug({ stream: { id, channelId: stream.channelId, reserved: String(stream.reserved) } }, "stream topped up");
    return {
      status: 200,
      headers: { [HEADER_PAYMENT_RESPONSE]: encodeTopUpResponse(answer), "content-type": "application/json", "cache-control": "no-store" },
      body: topUpResponseToJson(answer),
    };
  }

  /** Finishes the stream reservations whose lease ran out (dead processes), charging their checkpoints. */
  sweep(): Promise<void> {
    if (this.sweeping) return this.sweeping;
    this.sweeping = (async () => {
      try {
        const rows = await this.streams.sweep(Date.now());
        if (rows.length > 0) {
          const charged = rows.reduce((s, r) => s + (r.charged < r.amount ? r.charged : r.amount), 0n);
          this.observer?.swept(rows.length, charged);
          for (const r of rows) {
            this.logger?.warn(
              { stream: { channelId: r.channelId, voucher: String(r.voucher), charged: String(r.charged), reserved: String(r.amount), checkpointAt: r.checkpointAt } },
              "a dead process's stream was finished, charging its last checkpoint",
            );
          }
        }
      } catch (e) {
        this.logger?.warn({ err: (e as Error).message }, "stream sweep failed; next time");
      } finally {
        this.sweeping = null;
      }
    })();
    return this.sweeping;
  }

  /** Sweeps now, then every half lease. */
  async start(): Promise<void> {
    await this.sweep();
    const every = this.o.sweepIntervalMs ?? STREAM_LEASE_MIN_MS / 2;
    this.sweeper = setInterval(() => void this.sweep(), every);
    this.sweeper.unref?.();
  }

  /** Ends every live stream (`server_closing`, with its receipt) and stops the sweeper. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    await Promise.all([...this.live.values()].map((s) => s.end("server_closing")));
    await this.sweeping;
    await this.streams.close().catch(() => undefined);
  }
}
