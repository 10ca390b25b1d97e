// What the console reads from db/ itself, because the GraphQL API has no field for it
// (yet): a function's code package hash, description and published versions, its aliases
// with their routing weights, its revision, dead letters per reason, and the throttle counts
// every process adds to ledger.throttle_counts. No SQL here: each is a db/ read function. A page calls these only for a
// session with the audit scope, the scope GraphQL asks for the rest of the same page.
import { functionRevision, listAliases, listPublishedVersions, type Alias, type PublishedVersion } from '../../db/control-plane.ts';
import { listFunctionVersions, type FunctionVersion } from '../../db/functions.ts';
import { deadLettersByReason, type DeadLetterReasonPoint, type StatsRequest } from '../../db/monitoring.ts';
import type { Executor } from '../../db/schema.ts';
import { throttlesOverTime, type ThrottlePoint } from '../../db/throttles.ts';

export interface ConsoleReads {
  /** every version, newest first (at most 100) */
  versions(name: string): Promise<FunctionVersion[]>;
  /** published versions of the function's current life, oldest first */
  publishedVersions(name: string): Promise<PublishedVersion[]>;
  aliases(name: string): Promise<Alias[]>;
  /** the seq of the function's latest change (Lambda's RevisionId); 0 before the first */
  revision(name: string): Promise<number>;
  deadLettersByReason(req: StatsRequest): Promise<DeadLetterReasonPoint[]>;
  /** sync 429s and async invocations held back, per bucket and function (docs/observability.md#throttles) */
  throttles(req: StatsRequest): Promise<ThrottlePoint[]>;
}

export function consoleReads(db: Executor): ConsoleReads {
  return {
    versions: (name) => listFunctionVersions(db, name),
    publishedVersions: (name) => listPublishedVersions(db, name),
    aliases: (name) => listAliases(db, name),
    revision: (name) => functionRevision(db, name),
    deadLettersByReason: (req) => deadLettersByReason(db, req),
    throttles: (req) => throttlesOverTime(db, req),
  };
}
