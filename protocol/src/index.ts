/**
 * The one definition of the `channel` scheme shared by client, server, settlement and tests:
 * EIP-712 domain and voucher types, channel ids, voucher digest/sign/verify, wire codec, error codes, ABIs.
 */
export * from "./eip712";
export * from "./channel";
export * from "./voucher";
export * from "./errors";
export * from "./amounts";
export * from "./wire";
export * from "./exact";
export * from "./open";
export * from "./stream";
export * from "./close";
export * from "./token";
export * from "./onchain";
export * from "./hex";
export { channelEscrowAbi } from "./abi/channelEscrow";
export * from "./escrow-code";
