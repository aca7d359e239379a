/**
 * The dependency rule of docs/architecture.md, checked by dependency-cruiser inside `npm test`
 * (test/packages/dependency-rules.test.ts) and by `npm run deps`:
 *
 *   protocol ← client;  protocol ← server/core ← server/express ← server/demo;  client and server never import each other;
 *   a package that agents or providers install never imports the demo app, scripts, tests or dev tools; no cycles.
 *
 * Package names resolve to their TypeScript sources (the `@paychan/source` export condition), so an import of
 * `@paychan/server` from `client/` is seen as an import of `server/core/src/…`.
 */
/** The packages a provider or an agent installs. */
const RUNTIME = "^(protocol|client|server/core|server/express)/src/";
/** Dev tools that must never reach a runtime package (they are devDependencies of the repository root). */
const DEV_TOOLS = "^node_modules/(hardhat|ts-node|typescript|mocha|chai|fast-check|solc|solidity-coverage|@nomicfoundation|@openzeppelin|autocannon|dependency-cruiser)/";

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "An import cycle: split the shared part into its own module.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "protocol-imports-nothing-ours",
      comment: "protocol/ is the one definition everyone imports; it imports none of our other code.",
      severity: "error",
      from: { path: "^protocol/" },
      to: { path: "^(client|server|scripts|test|contracts)/" },
    },
    {
      name: "client-not-server",
      comment: "The agent SDK never imports the provider side.",
      severity: "error",
      from: { path: "^client/" },
      to: { path: "^server/" },
    },
    {
      name: "server-not-client",
      comment: "The provider side never imports the agent SDK.",
      severity: "error",
      from: { path: "^server/" },
      to: { path: "^client/" },
    },
    {
      name: "core-not-adapters",
      comment: "The framework-free core never imports its HTTP adapter or the demo app.",
      severity: "error",
      from: { path: "^server/core/" },
      to: { path: "^server/(express|demo)/" },
    },
    {
      name: "adapter-not-demo",
      comment: "The Express adapter never imports the demo app.",
      severity: "error",
      from: { path: "^server/express/" },
      to: { path: "^server/demo/" },
    },
    {
      name: "runtime-not-dev-code",
      comment: "Installed packages never import the demo app (local chain, test keys, mock token), scripts or tests.",
      severity: "error",
      from: { path: RUNTIME },
      to: { path: "^(server/demo|scripts|test)/" },
    },
    {
      name: "runtime-not-dev-tools",
      comment: "Installed packages never import dev tools (Hardhat, ts-node, test frameworks).",
      severity: "error",
      from: { path: RUNTIME },
      to: { path: DEV_TOOLS },
    },
    {
      name: "drivers-only-in-their-store",
      comment: "better-sqlite3 and pg are optional peers: only their own store loads them (at run time).",
      severity: "error",
      from: { path: RUNTIME, pathNot: "^server/core/src/store/(sqlite|postgres)/" },
      to: { path: "^node_modules/(better-sqlite3|pg)/", dependencyTypesNot: ["type-only"] },
    },
    {
      name: "sdk-without-server-dependencies",
      comment: "The agent SDK and the protocol never load a server-side package.",
      severity: "error",
      from: { path: "^(protocol|client)/" },
      to: { path: "^node_modules/(better-sqlite3|pg|express|pino|prom-client)/" },
    },
    {
      name: "not-to-unresolvable",
      comment: "An import that resolves to nothing.",
      severity: "error",
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "(^|/)dist/|\\.d\\.ts$" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["@paychan/source", "require", "node", "default", "types"],
      extensions: [".ts", ".js", ".json", ".d.ts"],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
