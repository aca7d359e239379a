/**
 * Abandoned metered reservations. A metered request reserves its route's maximum (`reserved`, never claimed) until
 * its handler reports; a reservation still open after SETTLE_RESERVATION_TTL belongs to a handler that crashed with
 * its process or never finished: each cycle drops it, uncharged (a report arriving later charges nothing). Settlement
 * never waits for reservations: it claims `spent` only, so an open reservation neither blocks nor inflates a claim.
 */
import { describe, type SettlementCycle } from "./cycle";

/** Drops the reservations older than the TTL (not in a dry run); a failure is reported and the cycle goes on. */
export async function expireReservations(cy: SettlementCycle, dryRun = false): Promise<void> {
  if (dryRun) return;
  try {
    const n = await cy.o.store.expireReservations(Date.now() - (cy.o.config.reservationTtl ?? 3_600) * 1000);
    if (n > 0) cy.log?.warn({ expired: n, ttl: cy.o.config.reservationTtl }, "metered reservations expired uncharged (their handlers never reported)");
  } catch (e) {
    cy.report.failures.push(`expiring reservations: ${describe(e)}`);
  }
}
