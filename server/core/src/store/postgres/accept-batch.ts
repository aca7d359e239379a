/**
 * The accepts of one PostgreSQL group commit (./group-commit.ts), decided in memory between one read and one write.
 *
 * Inside the batch's transaction the store (./store.ts) locks every channel row the batch touches, in channel-id
 * order (`FOR UPDATE`), then reads which of the batch's voucher amounts are already used (a statement of its own, so
 * its snapshot is taken after the locks and sees what earlier holders committed); `BEGIN` and both reads go as one
 * simple query (one round trip). {@link planAccepts} decides
 * the items in queue order with the shared pure rule (`decideVoucher`), each on the row as the earlier items of the
 * batch left it in memory — exactly what running them one after the other would read — and {@link writeParams}
 * turns the outcome into ONE statement ({@link ACCEPT_BATCH_SQL}, sent with `COMMIT`: the second round trip): each
 * touched channel written once (an UPDATE of the locked rows, or an INSERT of the new ones, in id order), the used
 * vouchers and reservations as multi-row inserts, the used set pruned once per channel below its final floor.
 */
import type { Hex } from "viem";
import { MAX_UINT128 } from "@paychan/protocol";
import { decideVoucher } from "../../payments/accounting";
import type { AcceptVoucherInput, AcceptVoucherResult, ChainChannel, StoredChannel } from "../types";

/** One channel as the batch holds it. */
interface Held {
  /** The row as the transaction would read it now (null: not stored and nothing accepted yet). */
  channel: StoredChannel | null;
  /** Whether the row was stored before the batch (UPDATE) or is new (INSERT). */
  stored: boolean;
  /** `floor` as read (used vouchers up to the final floor are pruned once). */
  floorAtRead: bigint;
  /** Amounts this batch accepted on the channel. */
  used: bigint[];
  /** Accepted at least once in this batch: written at the end. */
  dirty: boolean;
}

export interface AcceptPlan {
  results: AcceptVoucherResult[];
  /** Channels to write, in id order. */
  held: Array<[string, Held]>;
  reservations: Array<{ id: string; voucher: bigint; amount: bigint }>;
  /** Whether anything was accepted (else the transaction rolls back: a refusal writes nothing). */
  writes: boolean;
}

/** Lowercase channel id of an input. */
export const idOf = (input: AcceptVoucherInput): string => input.chain.channelId.toLowerCase();

/**
 * The chain fields after merging snapshot `p` into row `t` (the rule of the store's SQL `MERGE_CHAIN`): a newer or
 * equal block wins, except that `settled` never goes down and `finalized` never goes back.
 */
function mergeChain(t: StoredChannel, p: ChainChannel): Pick<StoredChannel, "deposit" | "settled" | "closeRequestedAt" | "closesAt" | "finalized" | "block"> {
  if (t.block > p.block) return { deposit: t.deposit, settled: t.settled, closeRequestedAt: t.closeRequestedAt, closesAt: t.closesAt, finalized: t.finalized, block: t.block };
  return {
    deposit: p.deposit,
    settled: t.settled > p.settled ? t.settled : p.settled,
    closeRequestedAt: p.closeRequestedAt,
    closesAt: p.closesAt,
    finalized: t.finalized || p.finalized,
    block: p.block,
  };
}

/**
 * Decides `inputs` in order on `rows` (the locked rows by lowercase id; absent = not stored) with `used` (the
 * already-used amounts among the inputs', as `${id}:${amount}`), at time `now`.
 */
export function planAccepts(inputs: readonly AcceptVoucherInput[], rows: ReadonlyMap<string, StoredChannel>, used: ReadonlySet<string>, now: number): AcceptPlan {
  const held = new Map<string, Held>();
  const reservations: AcceptPlan["reservations"] = [];
  let writes = false;
  const results = inputs.map((input): AcceptVoucherResult => {
    const id = idOf(input);
    let h = held.get(id);
    if (!h) {
      const row = rows.get(id) ?? null;
      h = { channel: row, stored: row !== null, floorAtRead: row?.floor ?? 0n, used: [], dirty: false };
      held.set(id, h);
    }
    const current = h.channel;
    if (current?.finalized) return { ok: false, code: "channel_finalized", channel: current };
    if (current && current.payerCloseRequestedAt !== 0) return { ok: false, code: "channel_closing", channel: current };
    const v = input.amount;
    const chain = input.chain;
    const isUsed = h.used.includes(v) || (h.stored && used.has(`${id}:${v}`));
    const deposit = current && current.deposit > chain.deposit ? current.deposit : chain.deposit;
    const reserve = input.reserve === true;
    const d = decideVoucher(
      { accepted: current?.accepted ?? 0n, spent: current?.spent ?? 0n, reserved: current?.reserved ?? 0n, floor: current?.floor ?? 0n, deposit },
      v,
      isUsed,
      input.charge,
      input.window,
      reserve,
    );
    if (!d.ok) return { ok: false, code: d.code, channel: current };
    // The stored signature is always the one of the voucher for `accepted`.
    const signature = !current || v > current.accepted ? input.signature : current.acceptedSignature;
    const accounting = { accepted: d.accepted, acceptedSignature: signature, spent: d.spent, reserved: d.reserved, floor: d.floor, updatedAt: now };
    h.channel = current
      ? { ...current, ...mergeChain(current, chain), ...accounting }
      : {
          channelId: id as Hex,
          payer: chain.payer,
          payee: chain.payee,
          token: chain.token,
          signer: chain.signer,
          deposit: chain.deposit,
          settled: chain.settled,
          closeDelay: chain.closeDelay,
          closeRequestedAt: chain.closeRequestedAt,
          closesAt: chain.closesAt,
          finalized: chain.finalized,
          block: chain.block,
          ...accounting,
          payerCloseRequestedAt: 0,
          closeRequestSignature: null,
          createdAt: now,
        };
    h.used.push(v);
    h.dirty = true;
    writes = true;
    if (reserve) reservations.push({ id, voucher: v, amount: input.charge });
    return { ok: true, channel: h.channel };
  });
  // A refusal shows the channel as this batch commits it (the freshest hint a client can resynchronise from: the
  // accepts after it in the batch are committed with it), not as the items before it left it.
  const final = results.map((r, i): AcceptVoucherResult => (r.ok || !r.channel ? r : { ...r, channel: held.get(idOf(inputs[i]))!.channel ?? r.channel }));
  const sorted = [...held.entries()].filter(([, h]) => h.dirty).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return { results: final, held: sorted, reservations, writes };
}

function amount(v: bigint): string {
  if (v < 0n || v > MAX_UINT128) throw new RangeError(`amount out of range: ${v}`);
  return v.toString(10);
}

/** The text of the error {@link ACCEPT_BATCH_SQL} raises when its counts fall short (nothing of the batch is kept). */
export const BATCH_CONFLICT = "accept batch conflict";

/**
 * The batch's one write: `locked` takes the stored rows' locks in id order (already held when the batch read them
 * under lock; a fast batch takes them here, before any update, so batches cannot deadlock), `upd` the stored rows
 * (final values) where the row's version token is still the one the batch planned on (each row gets the batch's new
 * token; on another token the trigger gives it a random one and the row does not count), `ins` the new ones (id
 * order; a concurrent first voucher of another replica makes the count fall short), `used` the accepted amounts (a
 * conflict here means the amount was used already), `pruned` the used set up to each final floor that rose, `res`
 * the reservations. When a count falls short the statement fails (a cast of {@link BATCH_CONFLICT} to int), so
 * nothing of it is kept (and a COMMIT sent with it does not run), and the caller starts over.
 *
 * In READ COMMITTED an UPDATE (and FOR UPDATE) that waited for another transaction's lock goes on with the row as
 * that transaction committed it, so the token compared is the newest one even when this statement started first.
 */
export const ACCEPT_BATCH_SQL = `
  WITH locked AS MATERIALIZED (
    SELECT channel_id FROM channels WHERE channel_id = ANY($1::text[]) ORDER BY channel_id FOR UPDATE
  ), upd AS (
    UPDATE channels c SET deposit = u.deposit, settled = u.settled, close_requested_at = u.cra, closes_at = u.ca,
      finalized = u.fin, chain_block = u.blk, accepted = u.accepted, accepted_signature = u.sig, spent = u.spent,
      floor = u.floor, reserved = u.reserved, updated_at = $13,
      version = CASE WHEN c.version = u.expect THEN u.next ELSE c.version END
    FROM unnest($1::text[], $2::numeric[], $3::numeric[], $4::bigint[], $5::bigint[], $6::boolean[], $7::bigint[],
                $8::numeric[], $9::text[], $10::numeric[], $11::numeric[], $12::numeric[], $41::bigint[], $42::bigint[])
      AS u(id, deposit, settled, cra, ca, fin, blk, accepted, sig, spent, floor, reserved, expect, next)
    WHERE c.channel_id = u.id AND (SELECT count(*) FROM locked) >= 0
    RETURNING c.version = u.next AS ok
  ), ins AS (
    INSERT INTO channels (channel_id, payer, payee, token, signer, deposit, settled, close_delay, close_requested_at,
      closes_at, finalized, chain_block, accepted, accepted_signature, spent, floor, reserved, payer_close_requested_at,
      created_at, updated_at, version)
    SELECT n.id, n.payer, n.payee, n.token, n.signer, n.deposit, n.settled, n.cd, n.cra, n.ca, n.fin, n.blk, n.accepted,
      n.sig, n.spent, n.floor, n.reserved, 0, $13, $13, n.next
    FROM unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::numeric[], $20::numeric[],
                $21::bigint[], $22::bigint[], $23::bigint[], $24::boolean[], $25::bigint[], $26::numeric[], $27::text[],
                $28::numeric[], $29::numeric[], $30::numeric[], $43::bigint[])
      AS n(id, payer, payee, token, signer, deposit, settled, cd, cra, ca, fin, blk, accepted, sig, spent, floor, reserved, next)
    ORDER BY n.id
    ON CONFLICT (channel_id) DO NOTHING
    RETURNING 1
  ), used AS (
    INSERT INTO used_vouchers (channel_id, amount)
    SELECT * FROM unnest($31::text[], $32::numeric[]) ORDER BY 1, 2
    ON CONFLICT DO NOTHING
    RETURNING 1
  ), pruned AS (
    DELETE FROM used_vouchers d USING unnest($33::text[], $34::numeric[]) AS p(id, floor)
    WHERE d.channel_id = p.id AND d.amount <= p.floor
  ), res AS (
    INSERT INTO reservations (channel_id, voucher, amount, created_at)
    SELECT r.id, r.voucher, r.amount, $13 FROM unnest($35::text[], $36::numeric[], $37::numeric[]) AS r(id, voucher, amount)
  )
  SELECT (CASE WHEN (SELECT count(*) FROM upd WHERE ok) = $38 AND (SELECT count(*) FROM ins) = $39 AND (SELECT count(*) FROM used) = $40
               THEN '1' ELSE '${BATCH_CONFLICT}' END)::int AS ok`;

/** Version tokens of a batch's write: the one each stored row must still have, and the one each written row gets. */
export interface BatchVersions {
  /** By lowercase id: the token the batch planned on (stored rows). */
  expect: ReadonlyMap<string, string>;
  /** By lowercase id: the token each written row gets. */
  next: ReadonlyMap<string, string>;
}

/**
 * The parameters of {@link ACCEPT_BATCH_SQL} for `plan`, and the counts it must answer. `usedAbove` says which
 * accepted amounts go into the used set: those above each channel's `final` floor (the batch read the used set under
 * lock, so the others are known unused and would be pruned at once), or all above the floor it `read` (a batch that
 * did not read the used set: the insert is its check that none was used; rows at or below the final floor are pruned
 * by a later floor rise).
 */
export function writeParams(plan: AcceptPlan, now: number, versions: BatchVersions, usedAbove: "final" | "read" = "final"): unknown[] {
  const upd: unknown[][] = Array.from({ length: 12 }, () => []);
  const ins: unknown[][] = Array.from({ length: 17 }, () => []);
  const used: [string[], string[]] = [[], []];
  const prune: [string[], string[]] = [[], []];
  const expect: string[] = [];
  const nextUpd: string[] = [];
  const nextIns: string[] = [];
  for (const [id, h] of plan.held) {
    const c = h.channel!;
    const acc = [amount(c.accepted), c.acceptedSignature, amount(c.spent), amount(c.floor), amount(c.reserved)];
    const chain = [amount(c.deposit), amount(c.settled)];
    const times = [c.closeRequestedAt, c.closesAt, c.finalized, c.block.toString()];
    const row = h.stored
      ? [id, ...chain, ...times, ...acc]
      : [id, c.payer, c.payee, c.token, c.signer, ...chain, c.closeDelay, ...times, ...acc];
    row.forEach((x, i) => (h.stored ? upd : ins)[i].push(x));
    const next = token(versions.next.get(id));
    if (h.stored) {
      expect.push(token(versions.expect.get(id)));
      nextUpd.push(next);
    } else nextIns.push(next);
    const above = usedAbove === "final" ? c.floor : h.floorAtRead;
    for (const v of [...h.used].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (v <= above) continue;
      used[0].push(id);
      used[1].push(amount(v));
    }
    if (h.stored && c.floor > h.floorAtRead) {
      prune[0].push(id);
      prune[1].push(amount(c.floor));
    }
  }
  const res = [plan.reservations.map((r) => r.id), plan.reservations.map((r) => amount(r.voucher)), plan.reservations.map((r) => amount(r.amount))];
  return [...upd, now, ...ins, ...used, ...prune, ...res, upd[0].length, ins[0].length, used[0].length, expect, nextUpd, nextIns];
}

/** A version token as a decimal string (a bigint of the database). */
function token(v: string | undefined): string {
  if (v === undefined || !/^-?[0-9]{1,19}$/.test(v)) throw new RangeError(`bad version token: ${v}`);
  return v;
}

/**
 * `sql` with its `$n` parameters written inline as SQL literals (strings escaped by pg's `escapeLiteral`, numbers
 * checked to be integers, arrays as `ARRAY[...]`; every array parameter in the text carries its cast). For the batch's
 * statements sent as ONE simple query with `BEGIN` or `COMMIT`: node-postgres does not pipeline, so this is how a
 * batch costs two round trips instead of four.
 */
export function inline(sql: string, values: readonly unknown[], escapeLiteral: (s: string) => string): string {
  const one = (v: unknown): string => {
    if (v === null || v === undefined) return "NULL";
    if (typeof v === "boolean") return v ? "TRUE" : "FALSE";
    if (typeof v === "number") {
      if (!Number.isSafeInteger(v)) throw new RangeError(`not an integer parameter: ${v}`);
      return String(v);
    }
    if (typeof v === "string") return escapeLiteral(v);
    if (Array.isArray(v)) return `ARRAY[${v.map(one).join(",")}]`;
    throw new TypeError(`unsupported parameter type ${typeof v}`);
  };
  return sql.replace(/\$(\d+)/g, (_, n: string) => {
    const i = Number(n) - 1;
    if (i < 0 || i >= values.length) throw new RangeError(`no parameter $${n}`);
    return one(values[i]);
  });
}
