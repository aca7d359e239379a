/**
 * `channel top-up <channelId> <amount>`: adds `amount` tokens to a channel's deposit.
 */
import { requireChannelId } from "../args";
import type { Command } from "../setup";
import { UsageError } from "../usage";

/** `channel top-up <channelId> <amount>` (alias `topup`). */
export const topUp: Command<{ id: string; value: string }> = {
  parse([id, value]) {
    const channel = requireChannelId(id);
    if (!value) throw new UsageError("top-up needs an amount");
    return { id: channel, value };
  },

  async run(ctx, { id, value }) {
    // Required here, not at the top: the checks of `parse` must not load viem (the helpers import @paychan/protocol).
    const { amount, toJson } = require("../format") as typeof import("../format");
    const channelId = ctx.resolveChannel(id);
    const ch = await ctx.agent.topUp(channelId, value);
    const t = await ctx.tokenInfo(ch.token);
    if (ctx.json) ctx.out(toJson({ channelId: ch.id, deposit: ch.deposit, remaining: ch.deposit - ch.signed }));
    else ctx.out(`channel ${ch.id}\n  deposit ${amount(ch.deposit, t)}, remaining ${amount(ch.deposit - ch.signed, t)}`);
    return 0;
  },
};
