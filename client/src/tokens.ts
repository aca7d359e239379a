/**
 * What the client knows about the tokens it pays in: decimals (read once), symbols, and the owner's limits converted
 * to each token's atomic units.
 */
import { getAddress, type Address } from "viem";
import { tokenDecimals, tokenSymbol, type ChainContext } from "./chain";
import { ClientError } from "./errors";
import { tokenLimits, type SpendingLimits, type TokenLimits } from "./limits";

/**
 * The unit the limits are read in when the owner names no tokens (`limits.assets` unset): "5" means 5 USDC. Without
 * this, a provider could name any other token the payer holds (WETH, say) and every limit would count in that
 * token's units; so, without `limits.assets`, only a token that is USDC by its symbol and decimals is paid in.
 */
export const DEFAULT_LIMIT_UNIT = { symbol: "USDC", decimals: 6 } as const;

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
    const decimals = await this.decimalsOf(token);
    if (!this.spendingLimits.assets?.length) await this.checkDefaultUnit(token, decimals);
    const tl = tokenLimits(this.spendingLimits, decimals);
    this.limits.set(k, tl);
    return tl;
  }

  /** Without `limits.assets`, refuses a token that is not {@link DEFAULT_LIMIT_UNIT}: `untrusted_terms`. */
  private async checkDefaultUnit(token: Address, decimals: number): Promise<void> {
    const symbol = await tokenSymbol(this.ctx, token);
    if (symbol === DEFAULT_LIMIT_UNIT.symbol && decimals === DEFAULT_LIMIT_UNIT.decimals) return;
    throw new ClientError(
      "untrusted_terms",
      `the provider asks to pay in ${symbol ? JSON.stringify(symbol) : "a token without a symbol"} (${getAddress(token)}, ${decimals} decimals)`,
      { details: "Without limits.assets the limits are USDC amounts and only USDC is paid in; list the tokens you accept in limits.assets (CLI: --token or the deployment record)." },
    );
  }
}
