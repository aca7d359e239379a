/**
 * The `channel` CLI's entry point as the bin (bin/channel.js) loads it: `dist/cli.js` exports `main`.
 * The CLI itself is in cli/: main.ts (arguments, usage, lazy loading), setup.ts, and one file per command.
 */
export { main } from "./cli/main";
