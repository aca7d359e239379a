/** The x402 `exact` scheme on the provider side (docs/protocol.md § 5.8). */
export * from "./checks";
export * from "./config";
export * from "./facilitator";
export * from "./payments";
export * from "./reconcile";
export * from "./sender";
export * from "./setup";
export * from "./store";
export * from "./token";
export * from "../store/exact-types";
