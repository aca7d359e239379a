/**
 * `channel withdraw <channelId>`: after the close delay, refunds the unspent deposit to the payer (or says that the
 * escrow kept it owed, when the token refused the transfer: then `channel collect`).
 */
import { requireChannelId } from "../args";
import type { Command } from "../setup";

/** `channel withdraw <channelId>`. */
export const withdraw: Command<{ id: string }> = {
  parse([id]) {
    return { id: requireChannelId(id) };
  },

  async run(ctx, { id }) {
    // Required here, not at the top: the checks of `parse` must not load viem (the helpers import @paychan/protocol).
    const { amount, shortHex, toJson } = require("../format") as typeof import("../format");
    const channelId = ctx.resolveChannel(id);
    const ch = ctx.agent.channels().find((c) => c.id === channelId);
    const r = await ctx.agent.withdraw(channelId);
    const t = ch ? await ctx.tokenInfo(ch.token) : { decimals: 0, symbol: "" };
    if (ctx.json) ctx.out(toJson({ channelId, ...r }));
    else if (r.deferred) {
      ctx.out(
        `channel ${channelId}\n  withdrawn: ${amount(r.refund, t)} NOT received: the token refused the transfer to ${ctx.agent.payerAddress} (paused or blacklisted); ` +
          `the escrow keeps it owed (tx ${shortHex(r.txHash)})\n  take it with \`channel collect\` (--to <address> to send it elsewhere)`,
      );
    } else ctx.out(`channel ${channelId}\n  withdrawn: ${amount(r.refund, t)} refunded to ${ctx.agent.payerAddress} (tx ${shortHex(r.txHash)})`);
    return 0;
  },
};
