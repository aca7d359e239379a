/**
 * keccak-256 for the hot paths: the native binding (`keccak` package, about 1.7× faster on 96-byte inputs here)
 * with @noble/hashes as the fallback when the binding cannot load.
 */
import { keccak_256 as nobleKeccak } from "@noble/hashes/sha3";

type Hasher = (data: Uint8Array) => Uint8Array;

function nativeKeccak(): Hasher | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const create = require("keccak/bindings") as (alg: string) => { update(d: Uint8Array): { digest(): Buffer } };
    const probe = create("keccak256").update(Buffer.alloc(0)).digest();
    if (probe.toString("hex") !== "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470") return null;
    // The binding takes only Buffers; wrapping a Uint8Array is a view, not a copy.
    return (data) =>
      create("keccak256")
        .update(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength))
        .digest();
  } catch {
    return null;
  }
}

/** keccak-256 of `data`. */
export const keccak256Bytes: Hasher = nativeKeccak() ?? ((data) => nobleKeccak(data));
