/**
 * `channel collect [--to <address>]`: takes what the escrow owes the payer (refunds it could not transfer because the
 * token refused them: paused, payer blacklisted), in the token and on the escrow of --token / --escrow, else of the
 * chain's deployment record; sent to the payer, or to --to.
 */
import type { Address } from "viem";
import { looksLikeAddress } from "../args";
import type { Command } from "../setup";
import { UsageError } from "../usage";

/** `channel collect [--to <address>]` (--token, --escrow). */
export const collect: Command<{ to?: string }> = {
  parse(args, opts) {
    if (args.length > 0) throw new UsageError(`collect takes no arguments (got ${JSON.stringify(args[0])}); pass the recipient with --to`);
    if (opts.to !== undefined && !looksLikeAddress(opts.to)) throw new UsageError("--to must be an address");
    return { to: opts.to };
  },

  async run(ctx, { to }, opts) {
    // Required here, not at the top: the checks of `parse` must not load viem.
    const { isAddress } = require("viem") as typeof import("viem");
    const { amount, shortHex, toJson } = require("../format") as typeof import("../format");
    if (to !== undefined && !isAddress(to)) throw new UsageError("--to must be an address"); // the checksum of a mixed-case address
    const escrow = (opts.escrow ?? ctx.deployment?.escrow) as Address | undefined;
    const token = (opts.token ?? ctx.deployment?.token) as Address | undefined;
    const r = await ctx.agent.collect({ escrow, token, to: to as Address | undefined });
    if (ctx.json) ctx.out(toJson(r));
    else ctx.out(`collected ${amount(r.amount, await ctx.tokenInfo(r.token))} owed by escrow ${r.escrow} to ${r.to} (tx ${shortHex(r.txHash)})`);
    return 0;
  },
};
