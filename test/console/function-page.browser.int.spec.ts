// The console's function page and throttles chart in a real headless Chromium against a
// real `invoke-ledger start`: a function deployed from two code packages, both published,
// an alias splitting traffic between them, a schedule that targets it, and a paused
// function (reservedConcurrency 0) whose async invocations the worker throttles into dead
// letters. The page shows versions with their code hashes and publish descriptions, the
// alias's weights, the schedule and the change history; the overview charts the
// throttles from the ledger. Descriptions carry markup: it must show as text, never run.
// The server holds a signing key, so an invocation's page links to its inclusion proof,
// which the console checks itself.
//
// Chromium is required: this test fails, it does not skip, when /usr/bin/chromium is missing.
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { strToU8, zipSync } from 'fflate';
import { sql } from 'kysely';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { proofHolds } from '../../apps/console/pages/proof.tsx';
import { sha256Hex } from '../../db/code/hash.ts';
import { changeFunction, createAlias, createManagedFunction, publishVersion } from '../../db/control-plane.ts';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { watch, until, graphqlData } from './browser.ts';

const CHROMIUM = '/usr/bin/chromium';
const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const SHOTS = fileURLToPath(new URL('../../test-results/console/', import.meta.url));

let t: TestDatabase;
let server: ServiceProcess | undefined;
let base: string;
let browser: Browser;
let context: BrowserContext;
let key: CreatedApiKey;

const zip1 = zipSync({ 'index.js': strToU8('exports.handler = async () => "one";') }, { mtime: new Date('2000-01-01T00:00:00Z') });
const zip2 = zipSync({ 'index.js': strToU8('exports.handler = async () => "two";') }, { mtime: new Date('2000-01-01T00:00:00Z') });
const RELEASE_1 = 'first <script>window.pwned = 1</script> release';
const ALIAS_NOTE = 'canary <img src=x onerror="window.pwned = 2">';
const SCHEDULE_NOTE = '<b onmouseover="window.pwned = 3">nightly</b> greeting';

const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

let pausedIds: string[];

const api = <T>(query: string, variables?: Record<string, unknown>) => graphqlData<T>(base, key.token, query, variables);

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  t = await createTestDatabase();
  key = await createApiKey(t.db, { name: 'console-test', scopes: ['invoke', 'admin', 'audit'] });
  const signing = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  server = await spawnService('all', await freePort(), {
    DATABASE_URL: t.ownerUrl,
    FUNCTIONS_DIR: FIXTURES,
    LEDGER_AUTH: 'on',
    POLL_INTERVAL_MS: '200',
    LEDGER_SIGNING_KEY: signing,
    THROTTLE_FLUSH_INTERVAL_MS: '200',
  });
  base = `http://127.0.0.1:${server.port}`;

  // greeter: code package 1 published, then package 2 with a longer timeout and a new
  // environment value, published; the alias live sends a quarter of its traffic to 2
  const by = { actor: 'console-test' };
  await createManagedFunction(t.db, by, 'greeter', { runtime: 'MODULE', handler: 'index.handler', description: 'Greets <b>people</b>', environment: { GREETING_TOKEN: 'tok-value-1' } }, { zip: zip1 });
  await publishVersion(t.db, by, 'greeter', { description: RELEASE_1 });
  await changeFunction(t.db, by, 'greeter', 'code_updated', { timeoutMs: 5_000, environment: { GREETING_TOKEN: 'tok-value-2' } }, { code: { zip: zip2 } });
  await publishVersion(t.db, by, 'greeter', { description: 'second' });
  await createAlias(t.db, by, 'greeter', 'live', { functionVersion: 1, additionalWeights: { '2': 0.25 }, description: ALIAS_NOTE });
  await api(`mutation($d: String) { createSchedule(input: { name: "nightly-greeting", expression: "at(2099-01-01T03:00:00)", targetFunction: "greeter", description: $d }) { id } }`, {
    d: SCHEDULE_NOTE,
  });

  // paused: reservedConcurrency 0, so the worker dead-letters each async invocation as ZeroReservedConcurrency
  pausedIds = [];
  for (let i = 0; i < 2; i++) pausedIds.push((await api<{ invokeAsync: { id: string } }>('mutation { invokeAsync(functionName: "paused", payload: {}) { id } }')).invokeAsync.id);
  for (const id of pausedIds) {
    await until(`${id} to be dead-lettered`, async () => {
      const r = await api<{ invocation: { status: string; deadLetterReason: string | null } }>('query($id: ID!) { invocation(id: $id) { status deadLetterReason } }', { id });
      return r.invocation.status === 'DEAD_LETTERED';
    });
  }

  // and one sync call, refused with 429: a throttle the ledger has no event for, counted in
  // ledger.throttle_counts by the process that refused it
  const refused = await fetch(`${base}/2015-03-31/functions/paused/invocations`, { method: 'POST', headers: { authorization: `Bearer ${key.token}` }, body: '{}' });
  expect(refused.status).toBe(429);
  await until('the 429 to be counted', async () => {
    const { rows } = await sql<{ n: string | null }>`select sum(count) as n from audit.throttles where function_name = 'paused'`.execute(t.db);
    return Number(rows[0]?.n ?? 0) === 1;
  });

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/console/sign-in`);
  await page.getByLabel('API key').fill(key.token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/console/`);
  await page.close();
}, 180_000);

afterAll(async () => {
  await context?.close();
  await browser?.close();
  if (server) await endProcess(server);
});

describe('a function in the console, in Chromium', () => {
  it('shows versions with their code hashes and publish descriptions, the alias weights, the schedule and the change history', async () => {
    const page = await context.newPage();
    const problems = watch(page, base);
    await page.goto(`${base}/console/functions/greeter`);
    await expect(page.locator('h1').innerText()).resolves.toBe('Function greeter');

    // configuration: the latest code package, environment variables by name only
    await expect(page.locator('#configuration [data-setting="codeSha256"] dd').innerText()).resolves.toBe(sha256Hex(zip2));
    // created, published, code updated, published: the function's fourth change
    await expect(page.locator('#configuration [data-setting="revision"] dd').innerText()).resolves.toBe('4');
    await expect(page.locator('#configuration [data-setting="environment"] dd').innerText()).resolves.toBe('GREETING_TOKEN');
    await expect(page.locator('#configuration [data-setting="description"] dd').innerText()).resolves.toBe('Greets <b>people</b>');

    // the alias and how it splits invocations
    const live = await page.locator('#aliases tr[data-alias="live"]').innerText();
    expect(live).toMatch(/version 1: 75 %/);
    expect(live).toMatch(/version 2: 25 %/);
    expect(live).toContain(ALIAS_NOTE);

    // versions, newest first: each one's code package, when it was published and with what description
    await expect(page.locator('#versions tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-version')))).resolves.toEqual(['2', '1']);
    const v1 = await page.locator('#versions tr[data-version="1"]').innerText();
    expect(v1).toContain(sha256Hex(zip1));
    expect(v1).toContain(RELEASE_1);
    expect(v1).toMatch(/live \(75 %\)/);
    const v2 = await page.locator('#versions tr[data-version="2"]').innerText();
    expect(v2).toContain(sha256Hex(zip2));
    expect(v2).toContain('second');
    expect(v2).toMatch(/live \(25 %\)/);
    expect(v2).toContain(`Code package (SHA-256): ${sha256Hex(zip1)} → ${sha256Hex(zip2)}`);
    expect(v2).toContain('Timeout: 3 s → 5 s');
    expect(v2).toContain('Environment variables: GREETING_TOKEN → GREETING_TOKEN (values changed)');

    // the schedule that targets it
    const schedule = await page.locator('#schedules tr[data-schedule="default/nightly-greeting"]').innerText();
    expect(schedule).toContain('at(2099-01-01T03:00:00)');
    expect(schedule).toContain('enabled');
    expect(schedule).toContain(SCHEDULE_NOTE);

    // the change history from the ledger, newest first, with who made each change
    await expect(page.locator('#history li[data-action]').evaluateAll((items) => items.map((i) => i.getAttribute('data-action')))).resolves.toEqual([
      'created', // the alias
      'published',
      'code_updated',
      'published',
      'created', // the function
    ]);
    const history = await page.locator('#history').innerText();
    expect(history).toMatch(/created alias live \(revision 1\) by console-test/);
    expect(history).toContain(`description: ${RELEASE_1}`);
    expect(history).toContain(`codeSha256: ${sha256Hex(zip2)}`);
    expect(history).toMatch(/environment: \{GREETING_TOKEN\} → \{GREETING_TOKEN\} \(values changed\)/);

    // no environment value anywhere on the page; the markup in descriptions stayed text
    const body = await page.locator('body').innerText();
    expect(body).not.toMatch(/tok-value/);
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();
    await expect(page.locator('main script, main img, main b').count()).resolves.toBe(0);

    await shot(page, '21-function-greeter');

    // every schedule, with its next ticks, from the navigation
    await page.getByRole('navigation', { name: 'Console' }).getByRole('link', { name: 'Schedules', exact: true }).click();
    await page.waitForURL(`${base}/console/schedules`);
    const listed = await page.locator('tr[data-schedule="default/nightly-greeting"]').innerText();
    expect(listed).toContain('greeter');
    expect(listed).toContain('2099-01-01 03:00:00.000');
    expect(listed).toContain(SCHEDULE_NOTE);
    await expect(page.locator('main b').count()).resolves.toBe(0);
    await shot(page, '24-schedules');
    expect(problems).toEqual({ errors: [], failed: [], foreign: [] });
    await page.close();
  }, 120_000);

  it('the overview charts the throttles of every process (429s, held back, ZeroReservedConcurrency), per function, and dead letters by reason', async () => {
    const page = await context.newPage();
    const problems = watch(page, base);
    await page.goto(`${base}/console/`);
    await page.waitForSelector('#charts figure[data-chart="throttles"] .uplot');
    const read = async (id: string) =>
      JSON.parse((await page.locator(`figure[data-chart="${id}"] .chart-canvas`).getAttribute('data-chart-data')) ?? '{}') as {
        series: { label: string; values: (number | null)[] }[];
      };
    const sum = (values: (number | null)[] | undefined) => (values ?? []).reduce<number>((n, v) => n + (v ?? 0), 0);
    const throttles = await read('throttles');
    expect(throttles.series.map((s) => [s.label, sum(s.values)])).toEqual([
      ['all functions', 3],
      ['paused', 3],
    ]);
    const reasons = await read('dead-letter-reasons');
    expect(Object.fromEntries(reasons.series.map((s) => [s.label, sum(s.values)]))).toEqual({
      RetriesExhausted: 0,
      EventAgeExceeded: 0,
      ZeroReservedConcurrency: 2,
      RecursiveInvocationLoop: 0,
    });
    // the numbers are in the page for those who cannot see the chart
    await page.locator('figure[data-chart="throttles"] summary').click();
    await expect(page.locator('figure[data-chart="throttles"] table tbody tr').count()).resolves.toBeGreaterThan(0);
    await shot(page, '22-overview-throttles');

    // one function's charts: only its throttles
    await page.goto(`${base}/console/?range=day&fn=greeter`);
    await page.waitForSelector('#charts figure[data-chart="throttles"] .uplot');
    expect((await read('throttles')).series.map((s) => [s.label, sum(s.values)])).toEqual([['greeter', 0]]);

    expect(problems).toEqual({ errors: [], failed: [], foreign: [] });
    await page.close();
  }, 120_000);

  it('an invocation links to its inclusion proof, which the console checks against the signed tree', async () => {
    // sign a head now that covers what is committed (the sealer would, within seconds)
    const signed = await fetch(`${base}/audit/tree-heads`, { method: 'POST', headers: { authorization: `Bearer ${key.token}` } });
    expect([200, 201]).toContain(signed.status);
    const id = pausedIds[0] as string;
    const page = await context.newPage();
    const problems = watch(page, base);
    await page.goto(`${base}/console/invocations/${id}`);
    await page.getByRole('link', { name: 'Its inclusion proof' }).click();
    await page.waitForURL(`${base}/console/invocations/${id}/proof`);
    // accepted and dead_lettered, both sealed and proven
    await expect(page.locator('#proof-verdict').innerText()).resolves.toMatch(/Every one of its 2 sealed events is in the signed tree/);
    await expect(page.locator('tbody tr').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).innerText.split('\t').at(-1)?.trim()))).resolves.toEqual(['holds', 'holds']);
    await shot(page, '23-inclusion-proof');
    expect(problems).toEqual({ errors: [], failed: [], foreign: [] });
    await page.close();

    // the check is the console's own: an event changed after sealing no longer holds
    type Proof = Parameters<typeof proofHolds>[0];
    const { invocationProof: proof } = await api<{ invocationProof: { treeSize: number; rootHash: string; events: Proof[] } }>(
      `query($id: ID!) { invocationProof(id: $id) { treeSize rootHash events { position leafIndex event { invocationId seq type attempt occurredAt data } leafHash auditPath } } }`,
      { id },
    );
    const last = proof.events.at(-1) as Proof;
    expect(proofHolds(last, proof.treeSize, proof.rootHash)).toBe(true);
    const changed = { ...last, event: { ...last.event, data: { reason: 'RetriesExhausted' } } };
    expect(proofHolds({ ...changed, leafHash: '' }, proof.treeSize, proof.rootHash)).toBe(false);
    expect(proofHolds(changed, proof.treeSize, proof.rootHash)).toBe(false);
  }, 120_000);
});
