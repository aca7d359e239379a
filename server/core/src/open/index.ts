/** Gasless opens on the provider side (docs/protocol.md § 5.9). */
export * from "./chain";
export * from "./config";
export * from "./opens";
export * from "./reconcile";
export * from "./setup";
export * from "../store/open-types";
