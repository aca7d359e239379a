/**
 * Paid streams on the client (docs/protocol.md § 5.10, § 7.7): the response of a streamed route is handed to the
 * caller at once, its body streaming as it arrives; the payment events are read and removed from it (the handler's
 * events pass through unchanged, in order); a `payment-need-voucher` is answered here, within the limits, by a top-up
 * voucher POSTed to the event's url; the final `payment-receipt` settles the call's payment. The request's reservation
 * (channels/in-flight.ts) lives until the stream ends: with its receipt, or interrupted (outcome unknown).
 */
import {
  HEADER_PAYMENT_SIGNATURE,
  SseParser,
  STREAM_EVENT_NEED_VOUCHER,
  STREAM_EVENT_RECEIPT,
  decodeNeedVoucher,
  decodeStreamReceipt,
  decodeTopUpResponse,
  formatSseFrame,
  type NeedVoucherEvent,
  type PaymentResponse,
  type SseFrame,
} from "@paychan/protocol";
import type { ChannelBook } from "../channels/book";
import { ClientError } from "../errors";
import type { ChannelPaymentInfo, StreamPaymentInfo } from "../options";
import type { ClientSession } from "../session";
import type { Receipts } from "./receipts";
import { signTopUp, type Payment } from "./vouchers";

/** Whether `res`, served for `payment`, is a paid stream (a streamed route's event stream without a receipt header yet). */
export function isPaidStream(payment: Payment, res: Response): boolean {
  if (!payment.terms.extra.stream || res.status >= 300) return false;
  return (res.headers.get("content-type") ?? "").toLowerCase().startsWith("text/event-stream") && !res.headers.has("payment-response");
}

/**
 * Wraps a paid stream's response: returns the Response the caller gets (same status and headers, the body without
 * payment events), answers top-ups, and ends the payment's reservation when the stream ends.
 */
export function payStream(s: ClientSession, book: ChannelBook, receipts: Receipts, payment: Payment, res: Response, url: string, info: ChannelPaymentInfo): Response {
  let settle!: (r: PaymentResponse) => void;
  let fail!: (e: unknown) => void;
  const final = new Promise<PaymentResponse>((a, b) => ((settle = a), (fail = b)));
  final.catch(() => undefined); // the caller may never ask
  const sp: StreamPaymentInfo = { state: "streaming", topUps: 0, topUpAmount: 0n, reserved: payment.reservation.amount, topUpsDeclined: 0, final };
  info.stream = sp;
  const parser = new SseParser();
  const encoder = new TextEncoder();
  let done = false;
  const end = (receipt?: PaymentResponse, why?: string) => {
    if (done) return;
    done = true;
    if (receipt) {
      sp.state = "complete";
      payment.finish({ receipt: receipt.amount });
      settle(receipt);
    } else {
      sp.state = "interrupted";
      payment.finish("unknown");
      fail(new ClientError("stream_interrupted", `the paid stream from ${new URL(url).origin} ended without its final receipt: ${why ?? "none was sent"}`));
    }
  };
  const onPaymentEvent = (f: SseFrame) => {
    if (f.event === STREAM_EVENT_RECEIPT) {
      try {
        const r = decodeStreamReceipt(f.data);
        if (receipts.apply(payment, r)) {
          info.receipt = r;
          end(r);
        }
      } catch {
        // A malformed receipt changes nothing we rely on; the stream's end without one is reported.
      }
      return;
    }
    let e: NeedVoucherEvent;
    try {
      e = decodeNeedVoucher(f.data);
    } catch {
      return;
    }
    if (e.channelId.toLowerCase() !== payment.channel.id.toLowerCase()) return;
    sp.id ??= e.stream;
    void topUp(s, book, payment, e, url, sp);
  };
  const body = res.body;
  if (!body) {
    end(undefined, "no body");
    return res;
  }
  const out = body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        let frames: SseFrame[];
        try {
          frames = parser.push(chunk);
        } catch (e) {
          controller.error(e);
          end(undefined, "malformed event stream");
          return;
        }
        let text = "";
        for (const f of frames) {
          if (f.event === STREAM_EVENT_NEED_VOUCHER || f.event === STREAM_EVENT_RECEIPT) onPaymentEvent(f);
          else text += formatSseFrame({ event: f.event === "message" ? undefined : f.event, data: f.data });
        }
        if (text) controller.enqueue(encoder.encode(text));
      },
      flush() {
        end(undefined, "the provider ended the stream without a receipt");
      },
      cancel() {
        end(undefined, "the caller cancelled the body");
      },
    } as Transformer<Uint8Array, Uint8Array>),
  );
  // An abort or a dropped connection errors the source: the pipe ends without flush.
  const reader = out.getReader();
  const relay = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done: eof } = await reader.read();
        if (eof) {
          controller.close();
          return;
        }
        controller.enqueue(value);
      } catch (e) {
        end(undefined, `the connection failed (${(e as Error)?.name ?? "error"})`);
        controller.error(e);
      }
    },
    cancel(reason) {
      end(undefined, "the caller cancelled the body");
      return reader.cancel(reason);
    },
  });
  const wrapped = new Response(relay, { status: res.status, statusText: res.statusText, headers: res.headers });
  return wrapped;
}

/** Answers one `payment-need-voucher`: a top-up voucher within the limits, POSTed to the event's url. */
async function topUp(s: ClientSession, book: ChannelBook, payment: Payment, e: NeedVoucherEvent, url: string, sp: StreamPaymentInfo): Promise<void> {
  const ch = payment.channel;
  let target: string;
  try {
    target = new URL(e.url, url).href;
    if (new URL(target).origin !== new URL(url).origin) throw new Error("another origin");
  } catch {
    sp.topUpsDeclined++;
    return;
  }
  const tl = await s.tokens.limitsOf(ch.token);
  const signed = signTopUp(s, book, payment, e.amount, tl);
  if (!signed) {
    sp.topUpsDeclined++;
    return;
  }
  let res: Response;
  try {
    res = await s.http(target, { method: "POST", headers: { [HEADER_PAYMENT_SIGNATURE]: signed.header } });
  } catch {
    return; // outcome unknown: the reservation keeps the top-up (the stream's end decides)
  }
  const text = await res.text().catch(() => "");
  if (res.status === 200) {
    try {
      const r = decodeTopUpResponse(res.headers.get("payment-response"));
      sp.reserved = r.extra.stream.reserved;
    } catch {
      sp.reserved = payment.reservation.amount;
    }
    sp.topUps++;
    sp.topUpAmount += e.amount;
    // The provider took the voucher and the stream goes on: it counts as served (maxUnservedPerChannel).
    if (ch.served === undefined || signed.voucher.cumulativeAmount > ch.served) ch.served = signed.voucher.cumulativeAmount;
    return;
  }
  // Refused (its code in the problem body): nothing was reserved by it.
  payment.reservation.shrink(e.amount);
  sp.topUpsDeclined++;
  void text;
}
