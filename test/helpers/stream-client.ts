/**
 * A minimal hand-written client of paid streams (docs/protocol.md § 5.10) for server tests: it reads the event stream
 * with the protocol's SSE parser, answers `payment-need-voucher` with a top-up voucher signed by the channel's session
 * key (POST to the url the event names), and collects the tokens, the payment events and the final receipt. Vouchers
 * are cumulative over everything it ever reserved on the channel (`signed += amount`), so each covers every request in
 * flight whatever order the server sees them in.
 */
import {
  decodeNeedVoucher,
  decodeStreamReceipt,
  decodeStreamReceiptTrailer,
  SseParser,
  STREAM_EVENT_NEED_VOUCHER,
  STREAM_EVENT_RECEIPT,
  type ChannelRequirements,
  type NeedVoucherEvent,
  type SseFrame,
  type StreamReceipt,
  type Voucher,
} from "@paychan/protocol";
import type { OpenedChannel } from "./escrow";
import { call, paymentHeaders, type Answer } from "./server";

/** One stream as the client saw it. */
export interface StreamRun {
  status: number;
  contentType: string | null;
  /** The handler's events, in order. */
  frames: SseFrame[];
  needs: NeedVoucherEvent[];
  /** Answers to the top-up side requests. */
  topUps: Answer[];
  receipt?: StreamReceipt;
  /** Whether the body ended (false when the client aborted). */
  ended: boolean;
  /** The body of a non-stream answer (e.g. a 400 or 402). */
  body?: string;
  /** Why the body broke off (the connection dropped), when it did and `dropOk` allowed it. */
  dropped?: Error;
}

export interface StreamCallOptions {
  /** Answer top-up requests (default true). */
  topUp?: boolean;
  /** Abort the request once this many handler events arrived. */
  abortAfter?: number;
  /** Extra headers. */
  headers?: Record<string, string>;
  /** A dropped connection (e.g. the server killed) ends the run instead of throwing (default false). */
  dropOk?: boolean;
  /** Aborts the request when it resolves. */
  abortWhen?: Promise<unknown>;
  /** Called for each handler event. */
  onFrame?(f: SseFrame, run: StreamRun): void;
}

/** Signs cumulative vouchers on one channel. */
export class TestPayer {
  signed = 0n;
  constructor(
    readonly url: string,
    readonly ch: OpenedChannel,
  ) {}

  /** The next voucher: everything signed before + `amount`. */
  next(amount: bigint): Voucher {
    this.signed += amount;
    return this.ch.voucher.sign(this.ch.id, this.signed);
  }

  /** {@link stream} continuing `from`'s vouchers (the same channel, another server URL). */
  async streamFrom(from: TestPayer, path: string, body: unknown, terms: ChannelRequirements, o: StreamCallOptions = {}): Promise<StreamRun> {
    this.signed = from.signed;
    try {
      return await this.stream(path, body, terms, o);
    } finally {
      from.signed = this.signed;
    }
  }

  /** A top-up side request with `voucher` for the stream `need` names. */
  topUp(terms: ChannelRequirements, need: NeedVoucherEvent, voucher: Voucher): Promise<Answer> {
    const url = need.url.startsWith("/") ? `${this.url}${need.url}` : need.url;
    return call(url, { method: "POST", headers: paymentHeaders(terms, voucher) });
  }

  /** POSTs JSON `body` to `path` paid with a voucher of `terms.amount`, and reads the stream to its end (or abort). */
  async stream(path: string, body: unknown, terms: ChannelRequirements, o: StreamCallOptions = {}): Promise<StreamRun> {
    const ac = new AbortController();
    void o.abortWhen?.then(() => ac.abort());
    const res = await fetch(`${this.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...paymentHeaders(terms, this.next(terms.amount)), ...o.headers },
      body: JSON.stringify(body),
      signal: ac.signal,
    });
    const run: StreamRun = { status: res.status, contentType: res.headers.get("content-type"), frames: [], needs: [], topUps: [], ended: false };
    if (!run.contentType?.startsWith("text/event-stream")) {
      run.body = await res.text();
      run.ended = true;
      return run;
    }
    const parser = new SseParser();
    const pending: Promise<unknown>[] = [];
    const reader = res.body!.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const f of parser.push(value)) {
          if (f.event === STREAM_EVENT_NEED_VOUCHER) {
            const need = decodeNeedVoucher(f.data);
            run.needs.push(need);
            if (o.topUp !== false) pending.push(
              this.topUp(terms, need, this.next(need.amount)).then(
                (a) => run.topUps.push(a),
                (e) => {
                  if (!o.dropOk) throw e;
                },
              ),
            );
          } else if (f.event === STREAM_EVENT_RECEIPT) {
            run.receipt = decodeStreamReceipt(f.data);
          } else {
            run.frames.push(f);
            o.onFrame?.(f, run);
            if (o.abortAfter !== undefined && run.frames.length >= o.abortAfter) {
              ac.abort();
              await Promise.all(pending);
              return run;
            }
          }
        }
      }
      run.ended = true;
    } catch (e) {
      if (o.dropOk && !ac.signal.aborted) run.dropped = e as Error;
      else if (!ac.signal.aborted) throw e;
    }
    await Promise.all(pending);
    return run;
  }
}

/** The trailer receipt of a raw HTTP/1.1 response (fetch does not expose trailers): for the trailer test. */
export function receiptOfTrailer(value: string): StreamReceipt {
  return decodeStreamReceiptTrailer(value);
}
