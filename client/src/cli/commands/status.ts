/**
 * `channel status`: the payer, the session key and every channel, refreshed from the chain: deposit, spent, settled,
 * remaining and close state; and what the escrow owes the payer (refunds the token refused), per escrow and token
 * of the channels and of the deployment record; and the totals signed and paid with the x402 `exact` scheme.
 */
import type { Address } from "viem";
import type { Command, Context } from "../setup";

/** What each escrow the client trusts owes the payer, per token of its channels and of the deployment record. */
async function owedBalances(ctx: Context): Promise<Array<{ escrow: Address; token: Address; amount: bigint }>> {
  const trusted = ctx.agent.limits.escrows?.map((e) => e.toLowerCase());
  const pairs = new Map<string, { escrow: Address; token: Address }>();
  const add = (escrow: Address, token: Address) => {
    if (trusted && !trusted.includes(escrow.toLowerCase())) return;
    pairs.set(`${escrow}|${token}`.toLowerCase(), { escrow, token });
  };
  if (ctx.deployment) add(ctx.deployment.escrow, ctx.deployment.token);
  for (const c of ctx.agent.channels()) add(c.escrow, c.token);
  return Promise.all([...pairs.values()].map(async (p) => ({ ...p, amount: await ctx.agent.owed(p.token, { escrow: p.escrow }) })));
}

/** `channel status`: no arguments. */
export const status: Command<void> = {
  parse() {},

  async run(ctx) {
    // Required here, not at the top: the checks of `parse` must not load viem (the helpers import @paychan/protocol).
    const { amount, duration, shortHex, table, toJson } = require("../format") as typeof import("../format");
    const channels = await ctx.agent.status();
    const owed = await owedBalances(ctx);
    const exact = ctx.agent.exactPayments();
    if (ctx.json) {
      ctx.out(toJson({ payer: ctx.agent.payerAddress, signer: ctx.agent.signerAddress, chainId: ctx.agent.chainId, channels, owed, exact }));
      return 0;
    }
    ctx.out(`payer ${ctx.agent.payerAddress}   session key ${ctx.agent.signerAddress}   chain ${ctx.agent.chainId}`);
    for (const o of owed.filter((x) => x.amount > 0n)) {
      const flag = o.escrow === ctx.deployment?.escrow && o.token === ctx.deployment?.token ? "" : ` --escrow ${o.escrow} --token ${o.token}`;
      ctx.out(`owed: ${amount(o.amount, await ctx.tokenInfo(o.token))} by escrow ${shortHex(o.escrow, 4)} (refunds the token refused); take it with \`channel collect${flag}\``);
    }
    for (const x of exact) {
      const t = await ctx.tokenInfo(x.token);
      ctx.out(`exact (one transfer per call): signed ${amount(x.signed, t)}, paid ${amount(x.paid, t)}${x.lastTransaction ? `, last transaction ${x.lastTransaction}` : ""}`);
    }
    if (channels.length === 0) {
      ctx.out("no channels yet (one opens on the first paid call, or with `channel open`)");
      return 0;
    }
    const now = Math.floor(Date.now() / 1000);
    const rows = [["CHANNEL", "PAYEE", "DEPOSIT", "SPENT", "SETTLED", "REMAINING", "STATE", "OPENED BY"]];
    const notes: string[] = [];
    for (const c of channels) {
      const t = await ctx.tokenInfo(c.token);
      let state: string = c.status;
      if (c.status === "closing" && c.closesAt) state = `closing (withdraw ${c.closesAt <= now ? "now" : `in ${duration(c.closesAt - now)}`})`;
      else if (c.status === "closing") state = "closing (cooperative)";
      else if (c.status === "missing") state = "missing (not on this chain)";
      else if (c.status === "opening" && c.openedBy === "provider") state = "opening (gasless: sent with the next paid call)";
      // Gasless opens: the provider sent the open (and paid its gas) and charged the fee with the first call.
      const by = c.openedBy === "provider" ? `provider (fee ${amount(c.openFee, t)})` : "payer";
      rows.push([shortHex(c.channelId), shortHex(c.payee, 4), amount(c.deposit, t), amount(c.spent, t), amount(c.settled, t), amount(c.remaining, t), state, by]);
      if (c.openedBy === "provider" && c.openTx) notes.push(`${shortHex(c.channelId)} opened by the provider in transaction ${c.openTx}`);
    }
    ctx.out(table(rows));
    for (const n of notes) ctx.out(n);
    return 0;
  },
};
