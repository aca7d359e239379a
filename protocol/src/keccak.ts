/**
 * keccak-256 for the hot paths: the `keccak` package's native sponge used directly (about 1.9 µs for a 96-byte
 * input here, vs 6 µs through the package's stream wrapper, which builds a Transform stream per hash, and 12 µs
 * for @noble/hashes), with @noble/hashes as the fallback when the binding cannot load or disagrees with it.
 */
import path from "node:path";
import { keccak_256 as nobleKeccak } from "@noble/hashes/sha3";

type Hasher = (data: Uint8Array) => Uint8Array;

/** The native sponge of the `keccak` package (the class its JS wrapper drives). */
interface KeccakState {
  initialize(rate: number, capacity: number): void;
  absorb(data: Buffer): void;
  squeeze(length: number): Buffer;
}

function nativeKeccak(): Hasher | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require("node-gyp-build") as (dir: string) => new () => KeccakState;
    const State = load(path.dirname(require.resolve("keccak/package.json")));
    // One state, re-initialised per hash: JavaScript runs one hash at a time, and squeeze returns a fresh Buffer.
    const state = new State();
    const hash: Hasher = (data) => {
      state.initialize(1088, 512); // keccak-256: rate 1088 bits, capacity 512; keccak padding by default
      state.absorb(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      return state.squeeze(32);
    };
    // Trust the binding only if it agrees with the reference on a few sizes (empty, one block, across blocks).
    for (const n of [0, 32, 96, 136, 200]) {
      const probe = Buffer.alloc(n, n & 0xff);
      if (!Buffer.from(hash(probe)).equals(Buffer.from(nobleKeccak(probe)))) return null;
    }
    return hash;
  } catch {
    return null;
  }
}

/** keccak-256 of `data`. */
export const keccak256Bytes: Hasher = nativeKeccak() ?? ((data) => nobleKeccak(data));
