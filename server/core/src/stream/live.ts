/**
 * One live paid stream (docs/protocol.md § 5.10): the handler's events go through {@link PaidStream.send}, which
 * counts their units as delivered when they are passed to the response's write() before the server saw the connection
 * close, keeps the charge within the reservation (asking for top-ups in band, holding the handler back while one is
 * awaited), writes checkpoints, and ends the stream with its final receipt (event and trailer).
 */
import { randomBytes } from "node:crypto";
import type { Address, Hex } from "viem";
import {
  encodeStreamReceiptTrailer,
  formatNeedVoucherFrame,
  formatSseComment,
  formatSseFrame,
  formatStreamReceiptFrame,
  SSE_CONTENT_TYPE,
  STREAM_PAYMENT_EVENTS,
  STREAM_RECEIPT_TRAILER,
  type StreamEndReason,
  type StreamReceipt,
} from "@paychan/protocol";
import type { StoredChannel } from "../store/types";
import type { StreamRoute } from "./options";
import type { StreamHost } from "./host";

/** Where a stream writes: the HTTP response, as an adapter gives it. */
export interface StreamSink {
  /** Whether the response's head went out (by the stream, or by the handler answering something else). */
  readonly headersSent: boolean;
  /** Sends status 200 and `headers`, once, before the first write. */
  writeHead(headers: Record<string, string>): void;
  /** Writes a chunk; false when the response's buffer is full (then {@link waitDrain}). */
  write(chunk: string): boolean;
  /** Resolves on the response's drain or close. */
  waitDrain(): Promise<void>;
  /** Ends the response with trailers. */
  end(trailers: Record<string, string>): void;
}

/** The stream ended; nothing more is written or charged. */
export class StreamEndedError extends Error {
  override name = "StreamEndedError";
  constructor(readonly reason: StreamEndReason) {
    super(`the stream ended (${reason})`);
  }
}

/** Options of one event. */
export interface SendOptions {
  /** The event's name (never `payment-need-voucher` nor `payment-receipt`). */
  event?: string;
  /** The event's id. */
  id?: string;
  /** Units this event carries (default 1; 0 = free). */
  units?: number;
}

/** What the stream was opened with: the committed reservation of its request. */
export interface StreamOpening {
  route: StreamRoute;
  channelId: Hex;
  payer: Address;
  /** The voucher amount that made the reservation (its key). */
  voucher: bigint;
  /** The reservation as committed (reserve + a gasless open's fee). */
  reserved: bigint;
  /** A gasless open's fee inside `reserved`: charged whatever happens. */
  fee: bigint;
  /** The channel as the accept committed it. */
  channel: StoredChannel;
}

/** An outstanding `payment-need-voucher` request. */
interface Ask {
  deadline: number;
}

/** A live paid stream. The handler's handle: {@link send}, {@link comment}, {@link signal}, {@link units}, {@link charged}. */
export class PaidStream {
  /** Opaque id (128 random bits, hex): the top-up url names it. */
  readonly id = randomBytes(16).toString("hex");
  readonly channelId: Hex;
  readonly payer: Address;
  readonly route: StreamRoute;
  /** Aborted when the stream ends (client gone, top-up timeout, server closing): stop producing. */
  readonly signal: AbortSignal;
  private readonly abort = new AbortController();
  private readonly voucher: bigint;
  private readonly fee: bigint;
  /** The reservation for units: initial + accepted top-ups (fee excluded). */
  private reservedUnits: bigint;
  private delivered = 0n;
  private unitCount = 0n;
  private ask: Ask | null = null;
  private wake: (() => void) | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private ending: Promise<StreamReceipt> | null = null;
  private endReason: StreamEndReason | null = null;
  private sinkClosed = false;
  private lastCheckpoint = 0;
  private unitsAtCheckpoint = 0n;
  private checkpointing: Promise<void> | null = null;
  private lost = false;
  private timer: NodeJS.Timeout | null = null;
  private channel: StoredChannel;

  constructor(
    private readonly host: StreamHost,
    private readonly sink: StreamSink,
    o: StreamOpening,
  ) {
    this.route = o.route;
    this.channelId = o.channelId;
    this.payer = o.payer;
    this.voucher = o.voucher;
    this.fee = o.fee;
    this.reservedUnits = o.reserved - o.fee;
    this.channel = o.channel;
    this.signal = this.abort.signal;
  }

  /** The voucher amount that made the stream's reservation (its key in the store). */
  get voucherKey(): bigint {
    return this.voucher;
  }

  /** Delivered units so far. */
  get units(): bigint {
    return this.unitCount;
  }

  /** What the stream has charged so far (delivered units × unitPrice, plus a gasless open's fee). */
  get charged(): bigint {
    return this.fee + this.delivered;
  }

  /** The reservation now (initial + accepted top-ups, with a gasless open's fee). */
  get reserved(): bigint {
    return this.fee + this.reservedUnits;
  }

  /** Whether the stream ended (or is ending). */
  get ended(): boolean {
    return this.endReason !== null;
  }

  /**
   * Marks the reservation as this stream's (the first checkpoint) and starts the lease renewal. False when the store
   * could not be written (the adapter then answers 503 and the reservation is released).
   */
  async start(): Promise<boolean> {
    try {
      const ok = await this.host.streams.checkpoint({ channelId: this.channelId, voucher: this.voucher, charged: this.fee, at: Date.now(), leaseMs: this.route.leaseMs });
      if (!ok) return false;
    } catch (e) {
      this.host.logger?.error({ err: (e as Error).message, stream: { id: this.id, channelId: this.channelId } }, "could not mark a stream's reservation");
      return false;
    }
    this.lastCheckpoint = Date.now();
    const every = Math.max(50, Math.floor(this.route.checkpointMs / 2));
    this.timer = setInterval(() => this.onTick(), every);
    this.timer.unref?.();
    return true;
  }

  /**
   * Writes one event carrying `units` units (default 1). Resolves once written; waits while a top-up is needed. Rejects
   * with {@link StreamEndedError} when the stream ended (the client went away, no top-up came in time, the server is
   * closing). Calls are written in order.
   */
  send(data: string, opts: SendOptions = {}): Promise<void> {
    const units = opts.units ?? 1;
    if (!Number.isSafeInteger(units) || units < 0) return Promise.reject(new RangeError("units must be a non-negative integer"));
    if (opts.event !== undefined && STREAM_PAYMENT_EVENTS.includes(opts.event)) return Promise.reject(new RangeError(`${opts.event} is a payment event name`));
    const frame = formatSseFrame({ event: opts.event, data, id: opts.id });
    const run = this.tail.then(() => this.sendNow(frame, BigInt(units)));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Writes an SSE comment (free; keeps an idle connection alive). */
  comment(text = ""): void {
    if (this.ended || this.sinkClosed) return;
    this.ensureHead();
    this.sink.write(formatSseComment(text));
  }

  /** The adapter: the connection was seen closing. Units written before this are charged; nothing after. */
  sinkClosedNow(): void {
    if (this.sinkClosed) return;
    this.sinkClosed = true;
    if (!this.ended) void this.end("client_closed");
  }

  /** The adapter: a top-up was committed (the channel as it left it); the reservation for units is now `reserved` − fee. */
  toppedUp(reserved: bigint, channel?: StoredChannel): void {
    if (channel) this.channel = channel;
    const units = reserved - this.fee;
    if (units > this.reservedUnits) this.reservedUnits = units;
    this.ask = null;
    this.lastCheckpoint = Date.now();
    this.wakeUp();
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private ensureHead(): void {
    if (this.sink.headersSent) return;
    this.sink.writeHead({ "content-type": SSE_CONTENT_TYPE, "cache-control": "no-cache", trailer: STREAM_RECEIPT_TRAILER, "x-accel-buffering": "no" });
  }

  private async sendNow(frame: string, units: bigint): Promise<void> {
    const cost = units * this.route.unitPrice;
    this.maybeAsk(cost);
    while (cost > this.reservedUnits - this.delivered) {
      if (this.ended) throw new StreamEndedError(this.endReason!);
      if (!this.ask || Date.now() >= this.ask.deadline) {
        if (this.ask) {
          // asked, nothing accepted by the deadline: a clean end with the final receipt
          await this.end("top_up_timeout");
          throw new StreamEndedError("top_up_timeout");
        }
        this.askNow();
      }
      await this.waitTopUp(this.ask!.deadline);
    }
    if (this.ended) throw new StreamEndedError(this.endReason!);
    if (this.sinkClosed) {
      await this.end("client_closed");
      throw new StreamEndedError("client_closed");
    }
    // Delivered: passed to write() while the connection was not seen closing (docs/protocol.md § 5.10).
    this.ensureHead();
    const room = this.sink.write(frame);
    this.delivered += cost;
    this.unitCount += units;
    if (!room) await this.sink.waitDrain();
    if (this.unitCount - this.unitsAtCheckpoint >= BigInt(this.route.checkpointUnits) || Date.now() - this.lastCheckpoint >= this.route.checkpointMs) {
      await this.checkpoint();
    }
  }

  /** Asks for a top-up when the unspent reservation would drop below the low-water mark and none is outstanding. */
  private maybeAsk(cost: bigint): void {
    if (this.ended || this.sinkClosed) return;
    const low = this.route.lowWater > cost ? this.route.lowWater : cost;
    if (this.reservedUnits - this.delivered - cost >= low) return;
    if (this.ask && Date.now() < this.ask.deadline) return;
    this.askNow();
  }

  private askNow(): void {
    const deadline = Date.now() + this.route.deadlineMs;
    this.ask = { deadline };
    if (this.sinkClosed) return;
    const c = this.channel;
    this.ensureHead();
    this.sink.write(
      formatNeedVoucherFrame({
        channelId: this.channelId,
        stream: this.id,
        url: this.host.voucherPath(this.id),
        amount: this.route.topUp,
        reserved: this.reserved,
        delivered: this.charged,
        cumulativeAmount: c.spent + c.reserved + this.route.topUp,
        deadline,
      }),
    );
  }

  private waitTopUp(deadline: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        if (this.wake === done) this.wake = null;
        resolve();
      }, Math.max(0, deadline - Date.now()) + 1);
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      this.wake = done;
    });
  }

  private onTick(): void {
    if (this.ended) return;
    if (Date.now() - this.lastCheckpoint >= this.route.checkpointMs) void this.checkpoint();
  }

  /** Writes the delivered charge and renews the lease (one at a time). */
  checkpoint(): Promise<void> {
    if (this.checkpointing) return this.checkpointing;
    const charged = this.charged;
    const units = this.unitCount;
    const at = Date.now();
    this.checkpointing = (async () => {
      try {
        const ok = await this.host.streams.checkpoint({ channelId: this.channelId, voucher: this.voucher, charged, at, leaseMs: this.route.leaseMs });
        if (ok) {
          this.lastCheckpoint = at;
          this.unitsAtCheckpoint = units;
        } else if (!this.ended) {
          // The reservation was finished by a sweeper (this process was taken for dead): nothing more may be charged.
          this.lost = true;
          this.host.logger?.warn({ stream: { id: this.id, channelId: this.channelId } }, "the stream's reservation was swept; ending it");
          void this.end("server_closing");
        }
      } catch (e) {
        this.host.logger?.error({ err: (e as Error).message, stream: { id: this.id, channelId: this.channelId } }, "stream checkpoint failed");
      } finally {
        this.checkpointing = null;
      }
    })();
    return this.checkpointing;
  }

  /**
   * Ends the stream once: no more units, the reservation finished in one store transaction (`spent +=` the charge,
   * the rest released), the final receipt written as the last event and as the trailer unless the client is gone.
   */
  end(reason: StreamEndReason): Promise<StreamReceipt> {
    if (this.ending) return this.ending;
    this.endReason = reason;
    this.ending = this.finish(reason);
    return this.ending;
  }

  /** The handler is done: the events it sent are written, then the stream ends (`complete`) with its receipt. */
  async complete(): Promise<StreamReceipt> {
    await this.tail;
    return this.end("complete");
  }

  /** The handler failed after its first event: what was delivered is charged; the receipt says `handler_error`. */
  async fail(): Promise<StreamReceipt> {
    await this.tail;
    return this.end("handler_error");
  }

  /**
   * The handler answered something else than a stream before its first event (e.g. a 400): nothing was delivered, the
   * reservation is released (a gasless open's fee stays charged). No receipt is written.
   */
  release(): Promise<StreamReceipt> {
    this.sinkClosed = true;
    return this.end("client_closed");
  }

  private async finish(reason: StreamEndReason): Promise<StreamReceipt> {
    if (this.timer) clearInterval(this.timer);
    this.host.remove(this);
    this.abort.abort(new StreamEndedError(reason));
    this.wakeUp();
    // A checkpoint in flight first: the finish must not be overtaken by it.
    await this.checkpointing?.catch(() => undefined);
    const charged = this.charged;
    let channel = this.channel;
    if (!this.lost) {
      try {
        const r = await this.host.store.finishReservation(this.channelId, this.voucher, charged);
        if (r.channel) channel = r.channel;
        if (!r.finished) this.host.logger?.warn({ stream: { id: this.id, channelId: this.channelId, charged: String(charged) } }, "the stream's reservation was already finished (swept)");
      } catch (e) {
        // The row stays with its last checkpoint: a sweeper finishes it charging that (at most what was delivered).
        this.host.logger?.error({ err: (e as Error).message, stream: { id: this.id, channelId: this.channelId, charged: String(charged) } }, "could not finish a stream's reservation");
      }
    }
    const spent = channel.spent + channel.reserved;
    const receipt: StreamReceipt = {
      success: true,
      transaction: "",
      network: this.host.network,
      payer: this.payer,
      amount: charged,
      extra: {
        channelId: this.channelId,
        accepted: channel.accepted,
        spent,
        deposit: channel.deposit,
        remaining: channel.deposit > spent ? channel.deposit - spent : 0n,
        stream: { id: this.id, units: this.unitCount, reason },
      },
    };
    this.host.observer?.ended(reason, this.unitCount, charged);
    this.host.paymentObserver?.finished?.({ charged, released: this.reserved - charged, failed: reason === "handler_error" });
    this.host.logger?.info({ stream: { id: this.id, channelId: this.channelId, units: String(this.unitCount), charged: String(charged), reason } }, "stream ended");
    if (!this.sinkClosed) {
      try {
        this.ensureHead();
        this.sink.write(formatStreamReceiptFrame(receipt));
        this.sink.end({ [STREAM_RECEIPT_TRAILER]: encodeStreamReceiptTrailer(receipt) });
      } catch (e) {
        this.host.logger?.warn({ err: (e as Error).message, stream: { id: this.id } }, "could not write a stream's receipt");
      }
    }
    return receipt;
  }
}
