/**
 * Server-Sent Events framing (the WHATWG HTML "event stream" format), shared by the server that writes a paid stream
 * and the client that reads it (docs/protocol.md § 5.10): an incremental parser (text or bytes in, frames out) and a
 * frame formatter.
 */
import { PaymentError } from "./errors";

/** The media type of an event stream. */
export const SSE_CONTENT_TYPE = "text/event-stream";

/** One dispatched event. */
export interface SseFrame {
  /** The `event:` field; `"message"` when the event named none. */
  event: string;
  /** The `data:` lines joined by `\n`. */
  data: string;
  /** The last event id (`id:`) seen in the stream so far, when one was. */
  id?: string;
}

/** Options of {@link SseParser}. */
export interface SseParserOptions {
  /** Largest event (its buffered lines, in characters) accepted; above it the parser throws `invalid_payload`. Default 1 MiB. */
  maxEventChars?: number;
}

/**
 * Incremental event-stream parser. `push` text or bytes (UTF-8, split anywhere, even inside a character or between
 * `\r` and `\n`) and get the events completed so far. Rules (WHATWG): lines end with `\r\n`, `\n` or `\r`; a blank
 * line dispatches the event; `data:` values are joined by `\n`; one space after the colon is dropped; lines starting
 * with `:` are comments; unknown fields are ignored; an event without data is not dispatched; a leading byte-order
 * mark is dropped; an event not ended by a blank line when the stream ends is discarded.
 */
export class SseParser {
  private readonly decoder = new TextDecoder("utf-8");
  private readonly maxEventChars: number;
  private line = "";
  private sawCr = false;
  private started = false;
  private data: string[] = [];
  private dataChars = 0;
  private event = "";
  private lastId: string | undefined;
  private pending = false;
  /** The last `retry:` value (milliseconds), when one was sent. */
  retry: number | undefined;

  constructor(options: SseParserOptions = {}) {
    this.maxEventChars = options.maxEventChars ?? 1 << 20;
  }

  /** Feeds a chunk; returns the events it completed, in order. */
  push(chunk: string | Uint8Array): SseFrame[] {
    let text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    const out: SseFrame[] = [];
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      if (c === 10 && this.sawCr && i === start && this.line === "") {
        // the \n of a \r\n split across chunks (or right after a \r line end)
        this.sawCr = false;
        start = i + 1;
        continue;
      }
      this.line += text.slice(start, i);
      this.sawCr = c === 13;
      this.onLine(this.line, out);
      this.line = "";
      start = i + 1;
      if (c === 13 && i + 1 < text.length && text.charCodeAt(i + 1) === 10) {
        this.sawCr = false;
        start = i + 2;
        i++;
      }
    }
    if (start < text.length) {
      this.sawCr = false;
      this.line += text.slice(start);
      if (this.line.length + this.dataChars > this.maxEventChars) throw new PaymentError("invalid_payload", `an event stream line is longer than ${this.maxEventChars} characters`);
    }
    return out;
  }

  /**
   * Ends the stream. Returns true when an event was left unfinished (lines after the last blank line, or a partial
   * line): per the rules it is discarded; a reader may take it as a truncated stream.
   */
  end(): boolean {
    const rest = this.decoder.decode();
    const unfinished = this.pending || this.line.length > 0 || rest.length > 0;
    this.line = "";
    this.data = [];
    this.dataChars = 0;
    this.event = "";
    this.pending = false;
    return unfinished;
  }

  private onLine(line: string, out: SseFrame[]): void {
    if (line === "") {
      if (this.data.length > 0) {
        const frame: SseFrame = { event: this.event === "" ? "message" : this.event, data: this.data.join("\n") };
        if (this.lastId !== undefined) frame.id = this.lastId;
        out.push(frame);
      }
      this.data = [];
      this.dataChars = 0;
      this.event = "";
      this.pending = false;
      return;
    }
    if (line.charCodeAt(0) === 58 /* : */) return;
    this.pending = true;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case "data":
        this.dataChars += value.length + 1;
        if (this.dataChars > this.maxEventChars) throw new PaymentError("invalid_payload", `an event is larger than ${this.maxEventChars} characters`);
        this.data.push(value);
        break;
      case "event":
        this.event = value;
        break;
      case "id":
        if (!value.includes("\u0000")) this.lastId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break;
    }
  }
}

const LINE_BREAK = /\r\n|\r|\n/;

/**
 * Formats one event: `event:` (when given and not `message`), `id:` (when given), one `data:` line per line of
 * `data` (split at `\r\n`, `\r` or `\n`), then the blank line. Throws a RangeError for an event name or id with a
 * line break (it would end the field early).
 */
export function formatSseFrame(frame: { event?: string; data: string; id?: string }): string {
  let s = "";
  if (frame.event !== undefined && frame.event !== "message") {
    if (LINE_BREAK.test(frame.event)) throw new RangeError("an event name cannot contain a line break");
    s += `event: ${frame.event}\n`;
  }
  if (frame.id !== undefined) {
    if (LINE_BREAK.test(frame.id) || frame.id.includes("\u0000")) throw new RangeError("an event id cannot contain a line break or NUL");
    s += `id: ${frame.id}\n`;
  }
  for (const line of frame.data.split(LINE_BREAK)) s += `data: ${line}\n`;
  return `${s}\n`;
}

/** A comment line (ignored by every reader): keeps an idle connection alive. */
export function formatSseComment(text = ""): string {
  return `:${text.replace(/[\r\n]+/g, " ")}\n\n`;
}
