/**
 * An x402 facilitator over HTTP (`FACILITATOR_URL`): `POST /verify` and `POST /settle` with
 * `{ x402Version, paymentPayload, paymentRequirements }`, as the x402 SDK's `HTTPFacilitatorClient` sends them. When
 * configured, `exact` transfers are submitted by the facilitator instead of the provider's own sender key; our local
 * checks, store record and replay rule stay the same (docs/protocol.md § 5.8).
 */
import type { Hex } from "viem";
import { encodeExactPaymentSignature, exactRequirementsToJson, type ExactPaymentPayload, type ExactRequirements } from "@paychan/protocol";

export interface FacilitatorVerdict {
  ok: boolean;
  /** The facilitator's reason when not ok. */
  reason?: string;
}

export interface FacilitatorSettlement {
  ok: boolean;
  transaction?: Hex;
  reason?: string;
}

/** The facilitator could not be reached or answered something unreadable (nothing is known about the transfer). */
export class FacilitatorUnavailableError extends Error {
  override name = "FacilitatorUnavailableError";
}

const HASH = /^0x[0-9a-fA-F]{64}$/;

/** `POST /verify` and `/settle` of one facilitator. */
export class HttpFacilitator {
  readonly url: string;

  constructor(
    url: string,
    private readonly timeoutMs = 30_000,
  ) {
    this.url = url.replace(/\/+$/, "");
  }

  private body(p: ExactPaymentPayload, r: ExactRequirements): string {
    // The payload as it travelled (our codec writes the stock field names), with the requirements we offered.
    const paymentPayload = JSON.parse(Buffer.from(encodeExactPaymentSignature(p), "base64").toString("utf8"));
    return JSON.stringify({ x402Version: p.x402Version, paymentPayload, paymentRequirements: exactRequirementsToJson(r) });
  }

  private async post(path: string, body: string, timeoutMs: number): Promise<Record<string, unknown>> {
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body, signal: AbortSignal.timeout(timeoutMs), redirect: "error" });
    } catch (e) {
      throw new FacilitatorUnavailableError(`the facilitator did not answer ${path}: ${(e as Error).message}`);
    }
    const text = await res.text().catch(() => "");
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new FacilitatorUnavailableError(`the facilitator answered ${path} with ${res.status} and no JSON`);
    }
    if (typeof data !== "object" || data === null) throw new FacilitatorUnavailableError(`the facilitator answered ${path} with ${res.status} and no object`);
    return data as Record<string, unknown>;
  }

  /** Whether the facilitator would settle this payment. */
  async verify(p: ExactPaymentPayload, r: ExactRequirements): Promise<FacilitatorVerdict> {
    const d = await this.post("/verify", this.body(p, r), Math.min(this.timeoutMs, 10_000));
    if (d.isValid === true) return { ok: true };
    if (d.isValid === false) return { ok: false, reason: String(d.invalidReason ?? d.invalidMessage ?? "refused").slice(0, 200) };
    throw new FacilitatorUnavailableError("the facilitator's /verify answer has no isValid");
  }

  /** Settles it: the transfer's transaction when it succeeded. */
  async settle(p: ExactPaymentPayload, r: ExactRequirements): Promise<FacilitatorSettlement> {
    const d = await this.post("/settle", this.body(p, r), this.timeoutMs);
    if (d.success === true && typeof d.transaction === "string" && HASH.test(d.transaction)) return { ok: true, transaction: d.transaction as Hex };
    if (d.success === false) return { ok: false, reason: String(d.errorReason ?? d.errorMessage ?? "failed").slice(0, 200) };
    throw new FacilitatorUnavailableError("the facilitator's /settle answer is neither a success with a transaction nor a failure");
  }
}
