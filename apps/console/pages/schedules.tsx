// Schedules (docs/schedules.md): every schedule with its expression, state, target and next
// ticks; with `admin`, a button enables or disables each (setScheduleState, the state alone).
import type { PageContext } from '../page.ts';
import { can } from '../session.ts';
import { count } from '../views/format.ts';
import { ErrorNote, Layout, NotAllowed, Time } from '../views/ui.tsx';

interface ScheduleRow {
  name: string;
  groupName: string;
  description: string | null;
  expression: string;
  timezone: string;
  state: string;
  targetFunction: string;
  targetQualifier: string | null;
  flexibleWindowMinutes: number | null;
  upcomingTicks: { scheduledTime: string; fireAt: string }[];
}

/** The API lists at most this many. */
const SHOWN = 1_000;
const NEXT_TICKS = 3;

const QUERY = /* GraphQL */ `
  query ConsoleSchedules($first: Int, $ticks: Int) {
    schedules(first: $first) {
      name groupName description expression timezone state targetFunction targetQualifier flexibleWindowMinutes
      upcomingTicks(count: $ticks) { scheduledTime fireAt }
    }
  }
`;

export async function schedulesPage(ctx: PageContext) {
  if (!can(ctx.session, 'audit')) {
    return (
      <Layout ctx={ctx} title="Schedules" nav="schedules">
        <NotAllowed ctx={ctx} />
      </Layout>
    );
  }
  const admin = can(ctx.session, 'admin');
  let rows: ScheduleRow[] = [];
  let failure: unknown = null;
  try {
    rows = (await ctx.gql<{ schedules: ScheduleRow[] }>(QUERY, { first: SHOWN, ticks: NEXT_TICKS })).schedules;
  } catch (e) {
    failure = e;
  }
  return (
    <Layout ctx={ctx} title="Schedules" nav="schedules">
      {failure ? <ErrorNote error={failure} what="schedules" /> : null}
      {rows.length === 0 && !failure ? <p>No schedule.</p> : null}
      {rows.length > 0 ? (
        <div class="table-wrap" tabindex={0} role="region" aria-label="Schedules">
          <table class="list">
            <caption class="sr-only">Schedules with their next ticks</caption>
            <thead>
              <tr>
                <th scope="col">Schedule</th>
                <th scope="col">Invokes</th>
                <th scope="col">Expression</th>
                <th scope="col">State</th>
                <th scope="col">Next ticks</th>
                <th scope="col">Description</th>
                {admin ? <th scope="col">Action</th> : null}
              </tr>
            </thead>
            <tbody>
              {rows.map((s) => (
                <tr data-schedule={`${s.groupName}/${s.name}`}>
                  <td class="mono">
                    {s.groupName}/{s.name}
                  </td>
                  <td>
                    <a href={`/console/functions/${encodeURIComponent(s.targetFunction)}`}>{s.targetFunction}</a>
                    {s.targetQualifier ? <span class="muted"> version {s.targetQualifier}</span> : null}
                  </td>
                  <td class="mono">
                    {s.expression} <span class="muted">({s.timezone})</span>
                    {s.flexibleWindowMinutes ? <span class="muted"> within {s.flexibleWindowMinutes} min</span> : null}
                  </td>
                  <td>{s.state.toLowerCase()}</td>
                  <td>
                    {s.state !== 'ENABLED' ? (
                      <span class="muted">none while disabled</span>
                    ) : s.upcomingTicks.length === 0 ? (
                      <span class="muted">no tick left</span>
                    ) : (
                      <ul class="plain">
                        {s.upcomingTicks.map((t) => (
                          <li>
                            <Time at={t.scheduledTime} />
                          </li>
                        ))}
                      </ul>
                    )}
                  </td>
                  <td>{s.description ?? '—'}</td>
                  {admin ? (
                    <td>
                      <form method="post" action="/console/schedules/state">
                        <input type="hidden" name="group" value={s.groupName} />
                        <input type="hidden" name="name" value={s.name} />
                        <input type="hidden" name="state" value={s.state === 'ENABLED' ? 'DISABLED' : 'ENABLED'} />
                        <button type="submit" aria-label={`${s.state === 'ENABLED' ? 'Disable' : 'Enable'} schedule ${s.groupName}/${s.name}`}>
                          {s.state === 'ENABLED' ? 'Disable' : 'Enable'}
                        </button>
                      </form>
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {rows.length >= SHOWN ? <p class="hint">The first {count(SHOWN)} schedules.</p> : null}
      <p class="hint">Change the rest of a schedule with the Scheduler API (UpdateSchedule), GraphQL updateSchedule or the CLI (docs/schedules.md).</p>
    </Layout>
  );
}
