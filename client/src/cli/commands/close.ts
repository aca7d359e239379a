/**
 * `channel close <channelId> [--on-chain]`: asks the provider to close cooperatively (it settles and refunds the
 * rest at once), else, or with --on-chain, starts the close delay on chain (then `channel withdraw`).
 */
import { requireChannelId } from "../args";
import type { Command } from "../setup";

/** `channel close <channelId> [--on-chain]`. */
export const close: Command<{ id: string }> = {
  parse([id]) {
    return { id: requireChannelId(id) };
  },

  async run(ctx, { id }, opts) {
    // Required here, not at the top: the checks of `parse` must not load viem (the helpers import @paychan/protocol).
    const { shortHex, toJson } = require("../format") as typeof import("../format");
    const channelId = ctx.resolveChannel(id);
    const r = await ctx.agent.closeChannel(channelId, { mode: opts["on-chain"] ? "on-chain" : "auto" });
    if (ctx.json) ctx.out(toJson({ channelId, ...r }));
    else if (r.mode === "cooperative") ctx.out(`channel ${channelId}\n  the provider accepted a cooperative close: it settles and refunds the rest to the payer`);
    else {
      const when = r.closesAt ? new Date(r.closesAt * 1000).toISOString() : "after the close delay";
      ctx.out(`channel ${channelId}\n  close requested on chain; run \`channel withdraw ${shortHex(channelId)}\` from ${when}`);
    }
    return 0;
  },
};
