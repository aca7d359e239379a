import secp256k1 from "secp256k1";
import { keccak256Bytes as keccak_256 } from "./keccak";
import { bytesToHex, type Address, type Hex } from "viem";
import { domainSeparator, VOUCHER_TYPEHASH, type EscrowDomain } from "./eip712";
import { MAX_UINT128 } from "./amounts";
import { BYTES32_PATTERN, SIGNATURE_PATTERN } from "./hex";

/** Largest `s` of a low-s signature (secp256k1 n / 2), the bound the contract and OpenZeppelin's ECDSA use. */
export const SECP256K1_HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

/** A signed voucher: the signer authorizes the payee to collect up to `cumulativeAmount` from `channelId`. */
export interface Voucher {
  channelId: Hex;
  cumulativeAmount: bigint;
  signature: Hex;
}

const HALF_N_BYTES = Buffer.from(SECP256K1_HALF_N.toString(16).padStart(64, "0"), "hex");

function checkChannelId(channelId: string): void {
  if (typeof channelId !== "string" || !BYTES32_PATTERN.test(channelId)) throw new RangeError("channelId must be 32 bytes of 0x-hex");
}

function hexToBuf(hex: string, bytes: number): Buffer {
  const b = Buffer.from(hex.slice(2), "hex");
  if (b.length !== bytes) throw new RangeError(`expected ${bytes} bytes of hex`);
  return b;
}

/**
 * Computes voucher digests for one escrow domain with the domain separator and type hash precomputed,
 * so each digest costs two keccak calls on fixed buffers.
 */
export class VoucherHasher {
  /** `keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount))` is built in this buffer. */
  private readonly structBuf = Buffer.alloc(96);
  /** `0x1901 ‖ domainSeparator ‖ structHash`. */
  private readonly digestBuf = Buffer.alloc(66);
  readonly domainSeparator: Hex;

  constructor(readonly domain: EscrowDomain) {
    this.domainSeparator = domainSeparator(domain);
    hexToBuf(VOUCHER_TYPEHASH, 32).copy(this.structBuf, 0);
    this.digestBuf[0] = 0x19;
    this.digestBuf[1] = 0x01;
    hexToBuf(this.domainSeparator, 32).copy(this.digestBuf, 2);
  }

  /** The EIP-712 digest of the voucher, as raw bytes (a fresh copy). */
  digestBytes(channelId: Hex, cumulativeAmount: bigint): Uint8Array {
    checkChannelId(channelId);
    if (typeof cumulativeAmount !== "bigint" || cumulativeAmount < 0n || cumulativeAmount > MAX_UINT128) {
      throw new RangeError("cumulativeAmount out of uint128 range");
    }
    const s = this.structBuf;
    s.write(channelId.slice(2), 32, 32, "hex");
    s.fill(0, 64, 80); // uint128 in a 32-byte word: top 16 bytes are zero
    s.writeBigUInt64BE(cumulativeAmount >> 64n, 80);
    s.writeBigUInt64BE(cumulativeAmount & 0xffffffffffffffffn, 88);
    this.digestBuf.set(keccak_256(s), 34);
    return keccak_256(this.digestBuf);
  }

  /** The EIP-712 digest of the voucher, as hex (what `ChannelEscrow.voucherDigest` returns). */
  digest(channelId: Hex, cumulativeAmount: bigint): Hex {
    return bytesToHex(this.digestBytes(channelId, cumulativeAmount));
  }
}

/**
 * Recovers the signer of a 65-byte (r ‖ s ‖ v) signature over `digest`, with the contract's rules:
 * v must be 27 or 28, s must be low (≤ n/2), r and s non-zero. Returns null when invalid.
 * Uses the native libsecp256k1 binding.
 */
export function recoverDigestSigner(digest: Uint8Array, signature: Hex): Address | null {
  const pub = recoverDigestPublicKey(digest, signature);
  return pub === null ? null : (bytesToHex(keccak_256(pub.subarray(1)).subarray(12)) as Address);
}

/** A 65-byte signature split for recovery: `rs` = r ‖ s (64 bytes), `recid` = v - 27. */
export interface SplitSignature {
  rs: Buffer;
  recid: 0 | 1;
}

/**
 * Checks a 65-byte (r ‖ s ‖ v) hex signature against the contract's rules (v in {27, 28}, s ≤ n/2) and splits it
 * for recovery; null when it breaks them. (r and s zero or out of range are caught by the recovery itself.)
 */
export function splitSignature(signature: Hex): SplitSignature | null {
  if (typeof signature !== "string" || !SIGNATURE_PATTERN.test(signature)) return null;
  const sig = Buffer.from(signature.slice(2), "hex");
  const v = sig[64];
  if (v !== 27 && v !== 28) return null;
  if (Buffer.compare(sig.subarray(32, 64), HALF_N_BYTES) > 0) return null;
  return { rs: sig.subarray(0, 64), recid: (v - 27) as 0 | 1 };
}

/** The uncompressed (65-byte) key that made `split` over `digest`, or null (native libsecp256k1). */
export function recoverSplitPublicKey(digest: Uint8Array, split: SplitSignature): Uint8Array | null {
  try {
    return secp256k1.ecdsaRecover(split.rs, split.recid, digest, false);
  } catch {
    return null; // r or s zero or out of range, or no point
  }
}

/** The uncompressed (65-byte) public key that signed `digest`, with the rules of {@link recoverDigestSigner}. */
export function recoverDigestPublicKey(digest: Uint8Array, signature: Hex): Uint8Array | null {
  const split = splitSignature(signature);
  return split === null ? null : recoverSplitPublicKey(digest, split);
}

/** Signs a digest with a private key, returning a 65-byte low-s signature with v in {27, 28}. */
export function signDigest(digest: Uint8Array, privateKey: Uint8Array): Hex {
  const { signature, recid } = secp256k1.ecdsaSign(digest, privateKey);
  const out = Buffer.alloc(65);
  out.set(signature, 0);
  out[64] = 27 + recid;
  return `0x${out.toString("hex")}`;
}

/** Signs vouchers for one domain with one key (an agent's session key); about 20× faster than viem's signTypedData. */
export class VoucherSigner {
  private readonly key: Uint8Array;
  readonly hasher: VoucherHasher;

  constructor(privateKey: Hex, domainOrHasher: EscrowDomain | VoucherHasher) {
    this.key = hexToBuf(privateKey, 32);
    if (!secp256k1.privateKeyVerify(this.key)) throw new RangeError("invalid private key");
    this.hasher = domainOrHasher instanceof VoucherHasher ? domainOrHasher : new VoucherHasher(domainOrHasher);
  }

  sign(channelId: Hex, cumulativeAmount: bigint): Voucher {
    const signature = signDigest(this.hasher.digestBytes(channelId, cumulativeAmount), this.key);
    return { channelId, cumulativeAmount, signature };
  }
}

/** Verifies vouchers for one domain: the fast path of the server (precomputed domain, native recovery, low-s only). */
export class VoucherVerifier {
  readonly hasher: VoucherHasher;

  constructor(domainOrHasher: EscrowDomain | VoucherHasher) {
    this.hasher = domainOrHasher instanceof VoucherHasher ? domainOrHasher : new VoucherHasher(domainOrHasher);
  }

  /** The voucher's signer, or null when the signature is malformed or not canonical. */
  recover(channelId: Hex, cumulativeAmount: bigint, signature: Hex): Address | null {
    return recoverDigestSigner(this.hasher.digestBytes(channelId, cumulativeAmount), signature);
  }

  /** Public keys of signers seen before (lowercase address → 65-byte key), to skip hashing the recovered key. */
  private readonly publicKeys = new Map<string, Buffer>();

  /**
   * Whether `signature` is `signer`'s valid signature of the voucher (same rules as {@link recoverDigestSigner}).
   * After a signer's first valid voucher its public key is cached, so later checks compare the recovered key
   * instead of hashing it into an address.
   */
  verify(voucher: Voucher, signer: Address): boolean {
    const digest = this.hasher.digestBytes(voucher.channelId, voucher.cumulativeAmount);
    const pub = recoverDigestPublicKey(digest, voucher.signature);
    return pub !== null && this.isSignerKey(pub, signer);
  }

  /**
   * Whether the 65-byte uncompressed public key `pub` belongs to `signer` (for callers that recover elsewhere, e.g.
   * on another thread). A signer's key is cached after its first match, so later checks compare bytes instead of
   * hashing the key into an address.
   */
  isSignerKey(pub: Uint8Array, signer: Address): boolean {
    const key = signer.toLowerCase();
    const known = this.publicKeys.get(key);
    if (known) return known.equals(pub);
    if (bytesToHex(keccak_256(pub.subarray(1)).subarray(12)) !== key) return false;
    if (this.publicKeys.size >= 100_000) this.publicKeys.clear(); // bounded memory
    this.publicKeys.set(key, Buffer.from(pub));
    return true;
  }
}

/**
 * Splits a 65-byte (r ‖ s ‖ v) signature into the EIP-2098 compact `(r, vs)` pair that `ChannelEscrow.settle`
 * takes: `vs` is `s` with the y-parity (v - 27) in its top bit.
 */
export function toCompactSignature(signature: Hex): { r: Hex; vs: Hex } {
  if (!SIGNATURE_PATTERN.test(signature)) throw new RangeError("expected a 65-byte signature");
  const r = `0x${signature.slice(2, 66)}` as Hex;
  const s = BigInt(`0x${signature.slice(66, 130)}`);
  const v = parseInt(signature.slice(130, 132), 16);
  if (v !== 27 && v !== 28) throw new RangeError("v must be 27 or 28");
  const vs = (BigInt(v - 27) << 255n) | s;
  return { r, vs: `0x${vs.toString(16).padStart(64, "0")}` as Hex };
}

/** Bytes per packed `ChannelEscrow.settle` item. */
export const SETTLE_ITEM_SIZE = 128;

/** One channel's claim for `ChannelEscrow.settle`. */
export interface SettleClaim {
  channelId: Hex;
  /** The voucher's amount. */
  cumulativeAmount: bigint;
  /** The new cumulative settled amount to claim (≤ cumulativeAmount). */
  amount: bigint;
  /** The voucher's 65-byte signature. */
  signature: Hex;
}

/**
 * The arguments of `ChannelEscrow.close(channelId, signer, cumulativeAmount, amount, signature, closeRequestSignature)`:
 * a settle claim plus the channel's signer (the escrow names a channel by id and signer) and, for a close sent by an
 * operator that refunds the payer, the payer's consent: its `CloseRequest(channelId)` signature (`"0x"` when the
 * payee itself closes, or a close is pending on chain). A refund-only close claims nothing:
 * `cumulativeAmount = amount = 0`, signature `"0x"` ({@link refundOnlyCloseClaim}).
 */
export interface CloseClaim extends SettleClaim {
  signer: Address;
  /** The payer's `CloseRequest(channelId)` signature (by the channel's signer or payer), or `"0x"`. */
  closeRequestSignature: Hex;
}

/** The close of a channel that pays the payee nothing more: no voucher, the payer gets the rest of the deposit back. */
export function refundOnlyCloseClaim(channelId: Hex, signer: Address, closeRequestSignature: Hex = "0x"): CloseClaim {
  return { channelId, signer, cumulativeAmount: 0n, amount: 0n, signature: "0x", closeRequestSignature };
}

/**
 * Packs claims into `settle`'s compact calldata: per item
 * `channelId (32) ‖ cumulativeAmount (16) ‖ amount (16) ‖ r (32) ‖ vs (32)`.
 */
export function encodeSettleItems(claims: readonly SettleClaim[]): Hex {
  const out = Buffer.alloc(claims.length * SETTLE_ITEM_SIZE);
  claims.forEach((c, i) => {
    const o = i * SETTLE_ITEM_SIZE;
    if (c.cumulativeAmount > MAX_UINT128 || c.amount > MAX_UINT128 || c.amount < 0n || c.cumulativeAmount < 0n) {
      throw new RangeError("settle amounts must fit uint128");
    }
    checkChannelId(c.channelId);
    out.write(c.channelId.slice(2), o, 32, "hex");
    out.writeBigUInt64BE(c.cumulativeAmount >> 64n, o + 32);
    out.writeBigUInt64BE(c.cumulativeAmount & 0xffffffffffffffffn, o + 40);
    out.writeBigUInt64BE(c.amount >> 64n, o + 48);
    out.writeBigUInt64BE(c.amount & 0xffffffffffffffffn, o + 56);
    const { r, vs } = toCompactSignature(c.signature);
    out.write(r.slice(2), o + 64, 32, "hex");
    out.write(vs.slice(2), o + 96, 32, "hex");
  });
  return `0x${out.toString("hex")}`;
}
