// What a handler really did, measured by its own side effect: fixtures that append
// "<invocationId> <attempt> <pid>" to a runs file (payload `runs`) when they start. Held
// against the ledger, it shows what can actually go wrong in multi-process runs: a handler
// run twice for one recorded attempt, run by a process that does not hold the attempt
// (more runs than the ledger's `started` and failures explain), or a `succeeded` for a run
// that never happened.
import { existsSync, readFileSync } from 'node:fs';
import { sql } from 'kysely';
import type { Executor } from '../../db/schema.ts';

export interface HandlerRuns {
  /** invocations whose handler ran more than once (each rerun after a recorded failure) */
  rerun: number;
  /** runs recorded in the file */
  runs: number;
  problems: string[];
}

export async function checkHandlerRuns(db: Executor, runsFile: string, ids: readonly string[]): Promise<HandlerRuns> {
  const lines = existsSync(runsFile) ? readFileSync(runsFile, 'utf8').split('\n').filter((l) => l.trim() !== '') : [];
  const runs = new Map<string, string[]>(); // "inv attempt" → pids
  const perInvocation = new Map<string, number>();
  for (const line of lines) {
    const [inv, attempt, pid] = line.split(' ') as [string, string, string];
    const k = `${inv} ${attempt}`;
    runs.set(k, [...(runs.get(k) ?? []), pid]);
    perInvocation.set(inv, (perInvocation.get(inv) ?? 0) + 1);
  }
  const { rows } = await sql<{ invocation_id: string; attempt: number; type: string; worker: string | null }>`
    select invocation_id, attempt, type, data ->> 'workerId' as worker from ledger.events
    where invocation_id = any(${ids}::uuid[]) and type in ('started', 'succeeded')`.execute(db);
  const startedBy = new Map<string, string>();
  const succeeded: string[] = [];
  const startedPer = new Map<string, number>();
  for (const r of rows) {
    const k = `${r.invocation_id} ${r.attempt}`;
    if (r.type === 'started') {
      startedBy.set(k, r.worker ?? '');
      startedPer.set(r.invocation_id, (startedPer.get(r.invocation_id) ?? 0) + 1);
    } else succeeded.push(k);
  }
  const problems: string[] = [];
  for (const [k, pids] of runs) {
    if (pids.length > 1) problems.push(`attempt ${k} ran ${pids.length} times (pids ${pids.join(', ')})`);
    const holder = startedBy.get(k);
    if (holder === undefined) problems.push(`attempt ${k} ran but was never started`);
    else if (!pids.every((p) => holder.includes(`:${p}:`))) problems.push(`attempt ${k} ran in pid ${pids.join(', ')} but was started by ${holder}`);
  }
  for (const [inv, n] of perInvocation) {
    if (n > (startedPer.get(inv) ?? 0)) problems.push(`${inv} ran ${n} times for ${startedPer.get(inv) ?? 0} recorded attempts`);
  }
  for (const k of succeeded) if (!runs.has(k)) problems.push(`attempt ${k} is recorded succeeded but its handler never ran`);
  return { rerun: [...perInvocation.values()].filter((n) => n > 1).length, runs: lines.length, problems };
}
