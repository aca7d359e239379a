/** The first line of an error's message (RPC and driver errors can be long; a start error says one thing). */
export const firstLine = (e: unknown): string => String((e as Error)?.message ?? e).split("\n")[0];
