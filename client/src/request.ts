/**
 * Requests as the paying fetch handles them: a body that can be sent again after a 402, and the key under which a
 * route's payment terms are remembered.
 */

/** What fetch accepts as its first argument. */
export type FetchInput = string | URL | Request;

export interface NormalizedRequest {
  url: string;
  method: string;
  init: RequestInit;
}

/** `METHOD origin/path`: a route's terms are remembered under this key (the query is ignored). */
export function routeKey(method: string, url: string): string {
  const u = new URL(url);
  return `${method.toUpperCase()} ${u.origin}${u.pathname}`;
}

function isReplayableBody(b: unknown): boolean {
  return (
    b === undefined ||
    b === null ||
    typeof b === "string" ||
    b instanceof ArrayBuffer ||
    ArrayBuffer.isView(b) ||
    b instanceof URLSearchParams ||
    (typeof Blob !== "undefined" && b instanceof Blob) ||
    (typeof FormData !== "undefined" && b instanceof FormData)
  );
}

/** The request as a URL, method and an init whose body can be sent twice (streams and Requests are buffered). */
export async function normalizeRequest(input: FetchInput, init?: RequestInit): Promise<NormalizedRequest> {
  if ((typeof input === "string" || input instanceof URL) && isReplayableBody(init?.body)) {
    return { url: String(input), method: (init?.method ?? "GET").toUpperCase(), init: init ?? {} };
  }
  // A Request or a one-shot body (stream): buffer it so the request can be sent again after a 402.
  const r = new Request(input as Request | string, init);
  const body = r.body ? await r.arrayBuffer() : undefined;
  return {
    url: r.url,
    method: r.method,
    init: { method: r.method, headers: r.headers, body, signal: r.signal, redirect: r.redirect, credentials: r.credentials },
  };
}

