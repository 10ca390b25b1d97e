// Dead letters: grouped by function and error type, and a page of them (optionally of one
// group) to redrive one at a time or as a selection. A redrive is the GraphQL `redrive`
// mutation with the session's key: it needs the admin scope and is recorded in the ledger
// (a `redriven` event, by "graphql") like any other.
import type { PageContext } from '../page.ts';
import { can } from '../session.ts';
import { count } from '../views/format.ts';
import { ErrorNote, Layout, NotAllowed, Time, withQuery } from '../views/ui.tsx';
import { InvocationTable, LIST_FIELDS, PAGE_SIZE, type ListInvocation } from './invocations.tsx';

interface Group {
  functionName: string;
  errorType: string | null;
  count: number;
  reasons: string[];
  oldestAt: string;
  newestAt: string;
}

const QUERY = /* GraphQL */ `
  query ConsoleDeadLetters($filter: InvocationFilter, $first: Int, $after: String) {
    deadLetterGroups { functionName errorType count reasons oldestAt newestAt }
    invocations(filter: $filter, first: $first, after: $after) {
      edges { node { ${LIST_FIELDS} } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

export const REDRIVE_FORM = 'redrive-selection';

export async function deadLettersPage(ctx: PageContext) {
  if (!can(ctx.session, 'audit')) {
    return (
      <Layout ctx={ctx} title="Dead letters" nav="dead-letters">
        <NotAllowed ctx={ctx} />
      </Layout>
    );
  }
  const fn = ctx.url.searchParams.get('fn')?.trim() || '';
  const errorType = ctx.url.searchParams.get('error')?.trim() || '';
  const after = ctx.url.searchParams.get('after') || null;
  const filter: Record<string, string> = { status: 'DEAD_LETTERED' };
  if (fn) filter.functionName = fn;
  if (errorType) filter.errorType = errorType;
  let data: {
    deadLetterGroups: Group[];
    invocations: { edges: { node: ListInvocation }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
  } | null = null;
  let failure: unknown = null;
  try {
    data = await ctx.gql(QUERY, { filter, first: PAGE_SIZE, after });
  } catch (e) {
    failure = e;
  }
  const groups = data?.deadLetterGroups ?? [];
  const rows = data?.invocations.edges.map((e) => e.node) ?? [];
  const total = groups.reduce((n, g) => n + g.count, 0);
  const admin = can(ctx.session, 'admin');
  const scope = fn || errorType ? `${fn || 'any function'}${errorType ? `, ${errorType}` : ''}` : null;
  return (
    <Layout ctx={ctx} title="Dead letters" nav="dead-letters" live={fn ? { functionName: fn } : {}}>
      {failure ? <ErrorNote error={failure} what="dead letters" /> : null}
      <div id="dead-letters" data-live-region data-live-types="DEAD_LETTERED,REDRIVEN">
        <section aria-labelledby="groups-heading">
          <h2 id="groups-heading">{total === 0 ? 'No dead letters' : `${count(total)} dead-lettered invocations`}</h2>
          {groups.length > 0 ? (
            <div class="table-wrap" tabindex={0} role="region" aria-label="Dead letters by function and error type">
              <table class="list">
                <caption class="sr-only">Dead letters by function and error type, largest group first</caption>
                <thead>
                  <tr>
                    <th scope="col">Function</th>
                    <th scope="col">Error type</th>
                    <th scope="col" class="num">
                      Count
                    </th>
                    <th scope="col">Reason</th>
                    <th scope="col">Newest</th>
                    <th scope="col">Oldest</th>
                  </tr>
                </thead>
                <tbody>
                  {groups.map((g) => {
                    const current = g.functionName === fn && (g.errorType ?? '') === errorType;
                    return (
                      <tr class={current ? 'current' : undefined}>
                        <td>{g.functionName}</td>
                        <td class="mono">{g.errorType ?? <span class="muted">none</span>}</td>
                        <td class="num">
                          <a
                            href={withQuery(new URL('/console/dead-letters', ctx.url), { fn: g.functionName, error: g.errorType ?? null })}
                            aria-current={current ? 'true' : undefined}
                            aria-label={`${g.count} dead letters of ${g.functionName}${g.errorType ? ` with ${g.errorType}` : ''}: show them`}
                          >
                            {count(g.count)}
                          </a>
                        </td>
                        <td>{g.reasons.join(', ')}</td>
                        <td>
                          <Time at={g.newestAt} />
                        </td>
                        <td>
                          <Time at={g.oldestAt} />
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          ) : null}
        </section>

        <section aria-labelledby="list-heading">
          <h2 id="list-heading">
            {scope ? `Dead letters of ${scope}` : 'Newest dead letters'}
            {after ? ' (a later page)' : ''}
          </h2>
          {scope ? (
            <p>
              <a href="/console/dead-letters">Show every group</a>
            </p>
          ) : null}
          {rows.length === 0 ? (
            <p>None.</p>
          ) : (
            <>
              {admin ? (
                <form method="post" action="/console/dead-letters/redrive" id={REDRIVE_FORM} class="actions">
                  <input type="hidden" name="back" value={`${ctx.url.pathname}${ctx.url.search}`} />
                  <button type="submit">Redrive selected</button>
                  <span class="hint">Each is queued again with a fresh retry budget (a redriven event, recorded as any redrive).</span>
                </form>
              ) : (
                <p class="hint">Redriving needs a key with the admin scope.</p>
              )}
              <InvocationTable
                rows={rows}
                caption={scope ? `Dead letters of ${scope}` : 'Newest dead letters'}
                {...(admin ? { select: { name: 'id', form: REDRIVE_FORM } } : {})}
              />
            </>
          )}
          <nav class="pager" aria-label="Pages">
            {after ? <a href={withQuery(ctx.url, { after: null })}>First page</a> : null}
            {data?.invocations.pageInfo.hasNextPage && data.invocations.pageInfo.endCursor ? (
              <a href={withQuery(ctx.url, { after: data.invocations.pageInfo.endCursor })} rel="next">
                Next {PAGE_SIZE}
              </a>
            ) : null}
          </nav>
        </section>
      </div>
    </Layout>
  );
}

/** Redrives the ids through GraphQL (one operation, one alias each); what happened, per id. */
export async function redriveInvocations(ctx: PageContext, ids: string[]): Promise<{ redriven: string[]; refused: { id: string; message: string }[] }> {
  const unique = [...new Set(ids)].slice(0, PAGE_SIZE * 2);
  if (unique.length === 0) return { redriven: [], refused: [] };
  const vars = Object.fromEntries(unique.map((id, i) => [`i${i}`, id]));
  const doc = `mutation ConsoleRedrive(${unique.map((_, i) => `$i${i}: ID!`).join(', ')}) {\n${unique
    .map((_, i) => `  r${i}: redrive(invocationId: $i${i}) { id status }`)
    .join('\n')}\n}`;
  const r = await ctx.gql.raw(doc, vars);
  const redriven: string[] = [];
  const refused: { id: string; message: string }[] = [];
  // an error without a path refuses the whole operation (no key, no scope)
  const whole = r.errors.find((e) => !e.path);
  unique.forEach((id, i) => {
    const err = whole ?? r.errors.find((e) => e.path?.[0] === `r${i}`);
    if (err) refused.push({ id, message: `${String(err.extensions?.code ?? 'Error')}: ${err.message}` });
    else if (r.data?.[`r${i}`]) redriven.push(id);
  });
  return { redriven, refused };
}
