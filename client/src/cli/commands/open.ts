/**
 * `channel open <payee> <amount>`: opens a channel to `payee` with `amount` tokens, on the escrow and token of
 * --escrow / --token, else of the chain's deployment record.
 */
import type { Address } from "viem";
import { looksLikeAddress, positiveInt } from "../args";
import type { Command } from "../setup";
import { UsageError } from "../usage";

/** `channel open <payee> <amount>` (--escrow, --token, --close-delay). */
export const open: Command<{ payee: string; value: string; closeDelay?: number }> = {
  parse([payee, value], opts) {
    if (!looksLikeAddress(payee)) throw new UsageError("open needs a payee address");
    if (!value) throw new UsageError("open needs an amount");
    const closeDelay = opts["close-delay"] === undefined ? undefined : positiveInt(opts["close-delay"], "--close-delay", 0);
    return { payee, value, closeDelay };
  },

  async run(ctx, { payee, value, closeDelay }, opts) {
    // Required here, not at the top: the checks of `parse` must not load viem.
    const { getAddress, isAddress } = require("viem") as typeof import("viem");
    const { amount, duration, toJson } = require("../format") as typeof import("../format");
    if (!isAddress(payee)) throw new UsageError("open needs a payee address"); // the checksum of a mixed-case address
    const escrow = (opts.escrow ?? ctx.deployment?.escrow) as Address | undefined;
    const token = (opts.token ?? ctx.deployment?.token) as Address | undefined;
    if (!escrow || !token) throw new UsageError("no deployment record for this chain: pass --escrow and --token");
    const ch = await ctx.agent.openChannel({ payee: getAddress(payee), amount: value, escrow, token, closeDelay });
    const t = await ctx.tokenInfo(token);
    if (ctx.json) ctx.out(toJson({ channelId: ch.id, deposit: ch.deposit, payee: ch.payee, token: ch.token, escrow: ch.escrow, closeDelay: ch.closeDelay, tx: ch.openTx }));
    else ctx.out(`channel ${ch.id}\n  deposit ${amount(ch.deposit, t)} to ${ch.payee}, close delay ${duration(ch.closeDelay)}`);
    return 0;
  },
};
