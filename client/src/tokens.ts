/**
 * What the client knows about the tokens it pays in: decimals (read once), symbols, and the owner's limits converted
 * to each token's atomic units.
 */
import type { Address } from "viem";
import { tokenDecimals, tokenSymbol, type ChainContext } from "./chain";
import { tokenLimits, type SpendingLimits, type TokenLimits } from "./limits";

/** Per-token facts read from the chain, cached by lower-cased address. */
export class TokenCache {
  private readonly decimals = new Map<string, number | Promise<number>>();
  private readonly limits = new Map<string, TokenLimits>();

  constructor(
    private readonly ctx: ChainContext,
    private readonly spendingLimits: SpendingLimits,
  ) {}

  /** A token's decimals (read once; a failed read is retried next time). */
  async decimalsOf(token: Address): Promise<number> {
    const k = token.toLowerCase();
    let d = this.decimals.get(k);
    if (d === undefined) {
      d = tokenDecimals(this.ctx, token).then(
        (v) => (this.decimals.set(k, v), v),
        (e) => {
          this.decimals.delete(k);
          throw e;
        },
      );
      this.decimals.set(k, d);
    }
    return d;
  }

  /** A token's decimals when already read, without waiting (undefined otherwise). */
  knownDecimals(token: Address): number | undefined {
    const d = this.decimals.get(token.toLowerCase());
    return typeof d === "number" ? d : undefined;
  }

  /** A token's symbol ("" when it has none). Not cached: only the CLI's output asks. */
  symbolOf(token: Address): Promise<string> {
    return tokenSymbol(this.ctx, token);
  }

  /** The owner's limits in atomic units of `token`. */
  async limitsOf(token: Address): Promise<TokenLimits> {
    const k = token.toLowerCase();
    const cached = this.limits.get(k);
    if (cached) return cached;
    const tl = tokenLimits(this.spendingLimits, await this.decimalsOf(token));
    this.limits.set(k, tl);
    return tl;
  }
}
