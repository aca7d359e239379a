/**
 * `channel address`: the payer (funding account), the session key that signs vouchers, and the chain id.
 */
import type { Command } from "../setup";

/** `channel address`: no arguments. */
export const address: Command<void> = {
  parse() {},

  async run(ctx) {
    // Required here, not at the top: the checks of `parse` must not load viem (the helpers import @paychan/protocol).
    const { toJson } = require("../format") as typeof import("../format");
    const out = { payer: ctx.agent.payerAddress, signer: ctx.agent.signerAddress, chainId: ctx.agent.chainId };
    if (ctx.json) ctx.out(toJson(out));
    else ctx.out(`payer        ${out.payer}\nsession key  ${out.signer}\nchain        ${out.chainId}`);
    return 0;
  },
};
