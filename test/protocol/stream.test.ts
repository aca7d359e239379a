/**
 * Streamed responses paid per unit, the protocol part (protocol/src/stream.ts, sse.ts; docs/protocol.md § 5.10): the
 * offer's `extra.stream`, the `payment-need-voucher` and `payment-receipt` events and the top-up answer round-trip in
 * their exact wire form; every bad field is `invalid_payload`; the SSE parser gives the same frames however the bytes
 * are split, and reads what the formatter writes.
 */
import { expect } from "chai";
import {
  decodeNeedVoucher,
  decodePaymentRequired,
  decodePaymentSignature,
  decodeStreamReceipt,
  decodeStreamReceiptTrailer,
  decodeTopUpResponse,
  encodePaymentRequired,
  encodePaymentSignature,
  encodeStreamReceiptTrailer,
  encodeTopUpResponse,
  formatNeedVoucherFrame,
  formatSseComment,
  formatSseFrame,
  formatStreamReceiptFrame,
  isStreamId,
  parseRequirements,
  parseStreamTerms,
  PaymentError,
  SseParser,
  STREAM_EVENT_NEED_VOUCHER,
  STREAM_EVENT_RECEIPT,
  type ChannelRequirements,
  type NeedVoucherEvent,
  type SseFrame,
  type StreamReceipt,
  type TopUpResponse,
} from "@paychan/protocol";

const ESCROW = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const TOKEN = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512";
const PAYEE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const PAYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const ID = `0x${"ab".repeat(32)}` as const;
const SIG = `0x${"cd".repeat(64)}1b` as const;
const STREAM = "0123456789abcdef0123456789abcdef";

const offer: ChannelRequirements = {
  scheme: "channel",
  network: "eip155:31337",
  asset: TOKEN,
  amount: 2000n,
  payTo: PAYEE,
  maxTimeoutSeconds: 60,
  extra: { escrow: ESCROW, name: "ChannelEscrow", version: "1", minDeposit: 1_000_000n, minCloseDelay: 86_400, stream: { unitPrice: 10n, topUp: 2000n, deadlineMs: 10_000 } },
};
const offerJson = () =>
  ({
    scheme: "channel",
    network: "eip155:31337",
    asset: TOKEN,
    amount: "2000",
    payTo: PAYEE,
    maxTimeoutSeconds: 60,
    extra: { escrow: ESCROW, name: "ChannelEscrow", version: "1", minDeposit: "1000000", minCloseDelay: 86400, stream: { unitPrice: "10", topUp: "2000", deadlineMs: 10000 } },
  }) as Record<string, any>;

const need: NeedVoucherEvent = {
  channelId: ID,
  stream: STREAM,
  url: `/channel/streams/${STREAM}/voucher`,
  amount: 2000n,
  reserved: 2000n,
  delivered: 1200n,
  cumulativeAmount: 15_200n,
  deadline: 1_800_000_000_000,
};
const needJson = () =>
  ({
    channelId: ID,
    stream: STREAM,
    url: `/channel/streams/${STREAM}/voucher`,
    amount: "2000",
    reserved: "2000",
    delivered: "1200",
    cumulativeAmount: "15200",
    deadline: 1_800_000_000_000,
  }) as Record<string, any>;

const receipt: StreamReceipt = {
  success: true,
  transaction: "",
  network: "eip155:31337",
  payer: PAYER,
  amount: 1230n,
  extra: { channelId: ID, accepted: 16_000n, spent: 14_230n, deposit: 1_000_000n, remaining: 985_770n, stream: { id: STREAM, units: 123n, reason: "complete" } },
};
const receiptJson = () =>
  ({
    success: true,
    transaction: "",
    network: "eip155:31337",
    payer: PAYER,
    amount: "1230",
    extra: { channelId: ID, accepted: "16000", spent: "14230", deposit: "1000000", remaining: "985770", stream: { id: STREAM, units: "123", reason: "complete" } },
  }) as Record<string, any>;

const topUp: TopUpResponse = {
  success: true,
  transaction: "",
  network: "eip155:31337",
  payer: PAYER,
  amount: 2000n,
  extra: { channelId: ID, accepted: 18_000n, spent: 12_000n, deposit: 1_000_000n, remaining: 988_000n, stream: { id: STREAM, reserved: 4000n, delivered: 1500n } },
};

function expectInvalid(fn: () => unknown, code = "invalid_payload"): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, "should throw").to.be.instanceOf(PaymentError);
  expect((err as PaymentError).code).to.equal(code);
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64");

describe("protocol: stream terms in the channel offer (extra.stream)", () => {
  it("round-trips in the exact wire form through PAYMENT-REQUIRED and PAYMENT-SIGNATURE", () => {
    const header = encodePaymentRequired({ x402Version: 2, error: "payment_required", resource: { url: "http://h/v1/chat" }, accepts: [offer] });
    const json = JSON.parse(Buffer.from(header, "base64").toString());
    expect(json.accepts[0]).to.deep.equal(offerJson());
    expect(decodePaymentRequired(header).accepts[0]).to.deep.equal(offer);
    const sig = encodePaymentSignature({ x402Version: 2, accepted: offer, payload: { channelId: ID, cumulativeAmount: 2000n, signature: SIG } });
    expect(decodePaymentSignature(sig).accepted.extra.stream).to.deep.equal(offer.extra.stream);
  });

  it("an offer without extra.stream stays without it", () => {
    const j = offerJson();
    delete j.extra.stream;
    expect(parseRequirements(j).extra).to.not.have.property("stream");
  });

  const bad: [string, (j: Record<string, any>) => void][] = [
    ["stream not an object", (j) => (j.extra.stream = "x")],
    ["stream null", (j) => (j.extra.stream = null)],
    ["unitPrice missing", (j) => delete j.extra.stream.unitPrice],
    ["unitPrice a number", (j) => (j.extra.stream.unitPrice = 10)],
    ["unitPrice 0", (j) => (j.extra.stream.unitPrice = "0")],
    ["unitPrice negative", (j) => (j.extra.stream.unitPrice = "-1")],
    ["unitPrice leading zero", (j) => (j.extra.stream.unitPrice = "010")],
    ["topUp missing", (j) => delete j.extra.stream.topUp],
    ["topUp below unitPrice", (j) => (j.extra.stream.topUp = "9")],
    ["topUp above uint128", (j) => (j.extra.stream.topUp = (1n << 128n).toString())],
    ["deadlineMs missing", (j) => delete j.extra.stream.deadlineMs],
    ["deadlineMs 0", (j) => (j.extra.stream.deadlineMs = 0)],
    ["deadlineMs a string", (j) => (j.extra.stream.deadlineMs = "10000")],
    ["deadlineMs fractional", (j) => (j.extra.stream.deadlineMs = 1.5)],
    ["deadlineMs above 10 minutes", (j) => (j.extra.stream.deadlineMs = 600_001)],
    ["reservation below one unit", (j) => (j.amount = "9")],
  ];
  for (const [name, mutate] of bad) {
    it(`refuses ${name}: invalid_payload`, () => {
      const j = offerJson();
      mutate(j);
      expectInvalid(() => parseRequirements(j));
    });
  }

  it("parseStreamTerms accepts the bounds (topUp = unitPrice, deadlineMs 1 and 600000)", () => {
    expect(parseStreamTerms({ unitPrice: "5", topUp: "5", deadlineMs: 1 })).to.deep.equal({ unitPrice: 5n, topUp: 5n, deadlineMs: 1 });
    expect(parseStreamTerms({ unitPrice: "5", topUp: "5", deadlineMs: 600_000 }).deadlineMs).to.equal(600_000);
  });
});

describe("protocol: payment-need-voucher event", () => {
  it("is one SSE frame of one data line with the exact JSON, and parses back", () => {
    const frame = formatNeedVoucherFrame(need);
    expect(frame).to.equal(`event: payment-need-voucher\ndata: ${JSON.stringify(needJson())}\n\n`);
    const [f] = new SseParser().push(frame);
    expect(f.event).to.equal(STREAM_EVENT_NEED_VOUCHER);
    expect(decodeNeedVoucher(f.data)).to.deep.equal(need);
  });

  it("accepts an absolute http(s) url", () => {
    for (const url of [`http://127.0.0.1:4021/channel/streams/${STREAM}/voucher`, "https://api.example/v"]) {
      expect(decodeNeedVoucher(JSON.stringify({ ...needJson(), url })).url).to.equal(url);
    }
  });

  const bad: [string, (j: Record<string, any>) => void][] = [
    ["channelId short", (j) => (j.channelId = "0x12")],
    ["channelId missing", (j) => delete j.channelId],
    ["stream id short (< 128 bits)", (j) => (j.stream = "ab".repeat(15))],
    ["stream id uppercase", (j) => (j.stream = STREAM.toUpperCase())],
    ["stream id a number", (j) => (j.stream = 1)],
    ["url missing", (j) => delete j.url],
    ["url relative without slash", (j) => (j.url = "channel/streams/x")],
    ["url protocol-relative", (j) => (j.url = "//evil.example/x")],
    ["url javascript:", (j) => (j.url = "javascript:alert(1)")],
    ["url with a space", (j) => (j.url = "/a b")],
    ["url too long", (j) => (j.url = `/${"a".repeat(2048)}`)],
    ["amount 0", (j) => (j.amount = "0")],
    ["amount a number", (j) => (j.amount = 2000)],
    ["reserved missing", (j) => delete j.reserved],
    ["delivered fractional", (j) => (j.delivered = "1.5")],
    ["cumulativeAmount negative", (j) => (j.cumulativeAmount = "-1")],
    ["deadline a string", (j) => (j.deadline = "1800000000000")],
    ["deadline negative", (j) => (j.deadline = -1)],
    ["deadline beyond 2286", (j) => (j.deadline = 10_000_000_000_000)],
  ];
  for (const [name, mutate] of bad) {
    it(`refuses ${name}: invalid_payload`, () => {
      const j = needJson();
      mutate(j);
      expectInvalid(() => decodeNeedVoucher(JSON.stringify(j)));
    });
  }

  it("refuses data that is not JSON, not an object, or too large", () => {
    expectInvalid(() => decodeNeedVoucher("{"));
    expectInvalid(() => decodeNeedVoucher("[]"));
    expectInvalid(() => decodeNeedVoucher("null"));
    expectInvalid(() => decodeNeedVoucher(JSON.stringify({ ...needJson(), pad: "x".repeat(17_000) })));
  });
});

describe("protocol: payment-receipt event and trailer", () => {
  it("the frame and the trailer carry the same exact JSON and parse back", () => {
    expect(formatStreamReceiptFrame(receipt)).to.equal(`event: payment-receipt\ndata: ${JSON.stringify(receiptJson())}\n\n`);
    const [f] = new SseParser().push(formatStreamReceiptFrame(receipt));
    expect(f.event).to.equal(STREAM_EVENT_RECEIPT);
    expect(decodeStreamReceipt(f.data)).to.deep.equal(receipt);
    const trailer = encodeStreamReceiptTrailer(receipt);
    expect(trailer).to.equal(b64(receiptJson()));
    expect(decodeStreamReceiptTrailer(trailer)).to.deep.equal(receipt);
  });

  it("every end reason round-trips", () => {
    for (const reason of ["complete", "top_up_timeout", "client_closed", "handler_error", "server_closing"] as const) {
      const r = { ...receipt, extra: { ...receipt.extra, stream: { ...receipt.extra.stream, reason } } };
      expect(decodeStreamReceipt(JSON.stringify(JSON.parse(formatStreamReceiptFrame(r).split("data: ")[1])))).to.deep.equal(r);
    }
  });

  const bad: [string, (j: Record<string, any>) => void][] = [
    ["extra.stream missing", (j) => delete j.extra.stream],
    ["stream id bad", (j) => (j.extra.stream.id = "xyz")],
    ["units a number", (j) => (j.extra.stream.units = 123)],
    ["units missing", (j) => delete j.extra.stream.units],
    ["reason unknown", (j) => (j.extra.stream.reason = "done")],
    ["reason missing", (j) => delete j.extra.stream.reason],
    ["success false", (j) => (j.success = false)],
    ["transaction set", (j) => (j.transaction = "0x12")],
    ["amount missing", (j) => delete j.amount],
    ["spent negative", (j) => (j.extra.spent = "-5")],
  ];
  for (const [name, mutate] of bad) {
    it(`refuses ${name}: invalid_payload (event and trailer)`, () => {
      const j = receiptJson();
      mutate(j);
      expectInvalid(() => decodeStreamReceipt(JSON.stringify(j)));
      expectInvalid(() => decodeStreamReceiptTrailer(b64(j)));
    });
  }

  it("a trailer that is not canonical base64 is invalid_payload", () => {
    expectInvalid(() => decodeStreamReceiptTrailer(b64(receiptJson()).replace(/=+$/, "")));
    expectInvalid(() => decodeStreamReceiptTrailer(""));
  });
});

describe("protocol: the answer to a top-up side request", () => {
  it("round-trips with extra.stream { id, reserved, delivered }", () => {
    const h = encodeTopUpResponse(topUp);
    expect(JSON.parse(Buffer.from(h, "base64").toString()).extra.stream).to.deep.equal({ id: STREAM, reserved: "4000", delivered: "1500" });
    expect(decodeTopUpResponse(h)).to.deep.equal(topUp);
  });

  it("refuses a missing or malformed extra.stream", () => {
    const j = JSON.parse(Buffer.from(encodeTopUpResponse(topUp), "base64").toString());
    for (const mutate of [(x: any) => delete x.extra.stream, (x: any) => (x.extra.stream.reserved = 1), (x: any) => (x.extra.stream.id = "0x00")]) {
      const c = structuredClone(j);
      mutate(c);
      expectInvalid(() => decodeTopUpResponse(b64(c)));
    }
  });

  it("isStreamId: 32 to 64 lowercase hex digits", () => {
    expect(isStreamId("a".repeat(32))).to.equal(true);
    expect(isStreamId("a".repeat(64))).to.equal(true);
    expect(isStreamId("a".repeat(31))).to.equal(false);
    expect(isStreamId("a".repeat(65))).to.equal(false);
    expect(isStreamId("g".repeat(32))).to.equal(false);
  });
});

describe("protocol: SSE parser and formatter", () => {
  const parseAll = (chunks: (string | Uint8Array)[]): SseFrame[] => {
    const p = new SseParser();
    const out: SseFrame[] = [];
    for (const c of chunks) out.push(...p.push(c));
    return out;
  };

  it("follows the WHATWG rules: line ends, multi-line data, comments, one space dropped, unknown fields, no-data events, ids", () => {
    const text =
      "\uFEFF: a comment\r\n" +
      "event: a\r\ndata: one\r\ndata:two\r\ndata:  three\r\n\r\n" + // CRLF; only one space dropped
      "data: cr\rdata\r\r" + // CR line ends; "data" with no colon is an empty data line
      "id: 7\nevent: b\nfoo: ignored\ndata: x\n\n" +
      "event: nodata\n\n" + // no data: not dispatched
      "data: after-id\n\n" + // the last id persists
      "retry: 1500\nid\ndata: y\n\n" + // "id" with no value resets the id to ""
      "data: unfinished\n"; // no blank line: discarded at the end
    const p = new SseParser();
    const frames = p.push(text);
    expect(frames).to.deep.equal([
      { event: "a", data: "one\ntwo\n three" },
      { event: "message", data: "cr\n" },
      { event: "b", data: "x", id: "7" },
      { event: "message", data: "after-id", id: "7" },
      { event: "message", data: "y", id: "" },
    ]);
    expect(p.retry).to.equal(1500);
    expect(p.end()).to.equal(true);
  });

  it("gives the same frames when the bytes are split at every boundary (UTF-8 inside a character, \\r|\\n)", () => {
    const text = "event: payment-need-voucher\r\ndata: {\"a\":\"é€😀\"}\r\n\r\n: c\rdata: x\r\rdata: y\ndata: z\n\n" + formatNeedVoucherFrame(need);
    const bytes = new TextEncoder().encode(text);
    const whole = parseAll([bytes]);
    expect(whole.map((f) => f.data)).to.deep.equal(['{"a":"é€😀"}', "x", "y\nz", JSON.stringify(needJson())]);
    for (let i = 0; i <= bytes.length; i++) {
      expect(parseAll([bytes.subarray(0, i), bytes.subarray(i)]), `split at byte ${i}`).to.deep.equal(whole);
    }
    for (let i = 0; i <= text.length; i++) {
      expect(parseAll([text.slice(0, i), text.slice(i)]), `split at char ${i}`).to.deep.equal(whole);
    }
    expect(parseAll([...bytes].map((b) => Uint8Array.of(b))), "one byte at a time").to.deep.equal(whole);
  });

  it("a stream ending on a blank line is complete; a BOM only at the very start is dropped", () => {
    const p = new SseParser();
    expect(p.push("data: a\n\n")).to.have.length(1);
    expect(p.end()).to.equal(false);
    expect(new SseParser().push("data: \uFEFFa\n\n")[0].data).to.equal("\uFEFFa");
  });

  it("refuses an event above maxEventChars with invalid_payload", () => {
    const p = new SseParser({ maxEventChars: 100 });
    expectInvalid(() => p.push(`data: ${"x".repeat(200)}\n`));
    const q = new SseParser({ maxEventChars: 100 });
    expectInvalid(() => q.push(`data: ${"x".repeat(60)}\ndata: ${"x".repeat(60)}\n`));
    const r = new SseParser({ maxEventChars: 100 });
    expectInvalid(() => r.push(`data: ${"x".repeat(200)}`)); // a partial line too
  });

  it("the formatter splits data with line breaks into data: lines that parse back (\\r\\n and \\r become \\n)", () => {
    const frame = formatSseFrame({ event: "token", data: "a\nb\r\nc\rd", id: "9" });
    expect(frame).to.equal("event: token\nid: 9\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    expect(new SseParser().push(frame)).to.deep.equal([{ event: "token", data: "a\nb\nc\nd", id: "9" }]);
    expect(formatSseFrame({ data: "" })).to.equal("data: \n\n");
    expect(new SseParser().push(formatSseFrame({ data: "" }))).to.deep.equal([{ event: "message", data: "" }]);
    expect(new SseParser().push(formatSseFrame({ data: " lead" }))[0].data).to.equal(" lead");
    expect(new SseParser().push(formatSseComment("keep\nalive") + "data: q\n\n")).to.deep.equal([{ event: "message", data: "q" }]);
    expect(() => formatSseFrame({ event: "a\nb", data: "" })).to.throw(RangeError);
    expect(() => formatSseFrame({ id: "a\rb", data: "" })).to.throw(RangeError);
  });
});
