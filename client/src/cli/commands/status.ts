/**
 * `channel status`: the payer, the session key and every channel, refreshed from the chain: deposit, spent, settled,
 * remaining and close state.
 */
import type { Command } from "../setup";

/** `channel status`: no arguments. */
export const status: Command<void> = {
  parse() {},

  async run(ctx) {
    // Required here, not at the top: the checks of `parse` must not load viem (the helpers import @paychan/protocol).
    const { amount, duration, shortHex, table, toJson } = require("../format") as typeof import("../format");
    const channels = await ctx.agent.status();
    if (ctx.json) {
      ctx.out(toJson({ payer: ctx.agent.payerAddress, signer: ctx.agent.signerAddress, chainId: ctx.agent.chainId, channels }));
      return 0;
    }
    ctx.out(`payer ${ctx.agent.payerAddress}   session key ${ctx.agent.signerAddress}   chain ${ctx.agent.chainId}`);
    if (channels.length === 0) {
      ctx.out("no channels yet (one opens on the first paid call, or with `channel open`)");
      return 0;
    }
    const now = Math.floor(Date.now() / 1000);
    const rows = [["CHANNEL", "PAYEE", "DEPOSIT", "SPENT", "SETTLED", "REMAINING", "STATE"]];
    for (const c of channels) {
      const t = await ctx.tokenInfo(c.token);
      let state: string = c.status;
      if (c.status === "closing" && c.closesAt) state = `closing (withdraw ${c.closesAt <= now ? "now" : `in ${duration(c.closesAt - now)}`})`;
      else if (c.status === "closing") state = "closing (cooperative)";
      else if (c.status === "missing") state = "missing (not on this chain)";
      rows.push([shortHex(c.channelId), shortHex(c.payee, 4), amount(c.deposit, t), amount(c.spent, t), amount(c.settled, t), amount(c.remaining, t), state]);
    }
    ctx.out(table(rows));
    return 0;
  },
};
