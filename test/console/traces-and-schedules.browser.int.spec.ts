// Trace ids in the console, in a real headless Chromium against a real `invoke-ledger
// start` with tracing on (OTLP/HTTP to a receiver this test runs) and TRACE_URL_TEMPLATE
// set: an invocation accepted with a caller's traceparent is found by its trace id, over
// GraphQL and from the search form, and its page links the invocation and each attempt to
// the trace viewer. A schedule is disabled and enabled again from the schedules page, with
// the keyboard, each change recorded in ledger.changes with the rest of its definition
// unchanged. A stream with a disabled and an enabled mapping shows each one's records behind
// its checkpoint per shard, on the queues page and in the overview's lag table. The same server serves the phone-width check of the function, schedules,
// proof and queues pages.
//
// Chromium is required: this test fails, it does not skip, when /usr/bin/chromium is missing.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { watch, until, graphql } from './browser.ts';

const CHROMIUM = '/usr/bin/chromium';
const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const SHOTS = fileURLToPath(new URL('../../test-results/console/', import.meta.url));
const TEMPLATE = 'http://jaeger.example:16686/trace/{traceId}';

let t: TestDatabase;
let receiver: OtlpReceiver;
let server: ServiceProcess | undefined;
let base: string;
let browser: Browser;

const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

async function invokeAsync(traceparent?: string): Promise<string> {
  const res = await fetch(`${base}/2015-03-31/functions/echo/invocations`, {
    method: 'POST',
    headers: { 'x-amz-invocation-type': 'Event', ...(traceparent ? { traceparent } : {}) },
    body: JSON.stringify({ note: '<script>window.pwned = 1</script>' }),
  });
  expect(res.status).toBe(202);
  return res.headers.get('x-amzn-requestid') as string;
}

async function succeeded(id: string): Promise<void> {
  await until(`${id} to succeed`, async () => (await gql<{ invocation: { status: string } }>('query($id: ID!) { invocation(id: $id) { status } }', { id })).data?.invocation.status === 'SUCCEEDED');
}

const gql = <T>(query: string, variables?: Record<string, unknown>) => graphql<T>(base, undefined, query, variables);

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  t = await createTestDatabase();
  receiver = await startOtlpReceiver();
  server = await spawnService(
    'all',
    await freePort(),
    {
      DATABASE_URL: t.ownerUrl,
      FUNCTIONS_DIR: FIXTURES,
      POLL_INTERVAL_MS: '200',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_SERVICE_NAME: 'invoke-ledger-console-test',
      TRACE_URL_TEMPLATE: TEMPLATE,
      LEDGER_SIGNING_KEY: generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    },
    { entry: 'tsx' },
  );
  base = `http://127.0.0.1:${server.port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  if (server) await endProcess(server);
  await receiver?.close();
});

describe('trace ids in the console (tracing on), in Chromium', () => {
  it('finds an invocation by the trace id it was accepted with and links it and its attempt to the trace viewer', async () => {
    const traceId = randomBytes(16).toString('hex');
    const traced = await invokeAsync(`00-${traceId}-${randomBytes(8).toString('hex')}-01`);
    const other = await invokeAsync();
    await succeeded(traced);
    await succeeded(other);

    // GraphQL: the filter finds exactly that invocation, in any letter case; the other
    // invocation has a trace of its own (tracing is on), which finds it alone
    const byTrace = async (id: string) =>
      (await gql<{ invocations: { edges: { node: { id: string; traceId: string } }[] } }>('query($t: String) { invocations(filter: { traceId: $t }) { edges { node { id traceId } } } }', { t: id })).data?.invocations.edges.map((e) => e.node);
    expect(await byTrace(traceId)).toEqual([{ id: traced, traceId }]);
    expect(await byTrace(traceId.toUpperCase())).toEqual([{ id: traced, traceId }]);
    const otherTrace = (await gql<{ invocation: { traceId: string } }>('query($id: ID!) { invocation(id: $id) { traceId } }', { id: other })).data?.invocation.traceId;
    expect(otherTrace).toMatch(/^[0-9a-f]{32}$/);
    expect(otherTrace).not.toBe(traceId);
    expect(await byTrace(otherTrace as string)).toEqual([{ id: other, traceId: otherTrace }]);
    expect(await byTrace(randomBytes(16).toString('hex'))).toEqual([]);
    const bad = await gql('{ invocations(filter: { traceId: "not-a-trace" }) { edges { node { id } } } }');
    expect(bad.errors?.[0]?.message).toMatch(/traceId must be 32 hexadecimal digits/);

    // the trace the link points at exists: the worker's attempt span is in it
    await until('the attempt span to be exported', async () => receiver.spans.some((s) => s.traceId === traceId && s.name === 'echo' && s.attributes['faas.invocation_id'] === traced));

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const problems = watch(page, base);
    await page.goto(`${base}/console/invocations`);
    await page.getByLabel('Trace id').fill(traceId);
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/trace=/);
    const rows = page.locator('#invocation-list tbody tr');
    await expect(rows.count()).resolves.toBe(1);
    await expect(rows.first().innerText()).resolves.toContain(traced.slice(-12));
    await shot(page, '30-search-by-trace');

    await page.goto(`${base}/console/invocations/${traced}`);
    const href = TEMPLATE.replace('{traceId}', traceId);
    await expect(page.getByRole('link', { name: traceId }).getAttribute('href')).resolves.toBe(href);
    await expect(page.getByRole('link', { name: 'Trace of attempt 1' }).getAttribute('href')).resolves.toBe(href);
    await shot(page, '31-invocation-trace-link');

    // a trace id that is not one is told so, not searched
    await page.goto(`${base}/console/invocations?trace=${encodeURIComponent('<b>x</b>')}`);
    await expect(page.locator('.flash-error').innerText()).resolves.toContain('“<b>x</b>” is not a trace id');
    await expect(page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).resolves.toBeUndefined();

    expect(problems).toEqual({ errors: [], failed: [], foreign: [] });
    await context.close();
  }, 120_000);

  it('disables and enables a schedule from the schedules page, with the keyboard, the state alone changing', async () => {
    const created = await gql(
      'mutation { createSchedule(input: { name: "hourly-echo", expression: "rate(1 hour)", targetFunction: "echo", input: "{\\"a\\":1}", description: "<i>hourly</i>", flexibleWindowMinutes: 5 }) { id } }',
    );
    expect(created.errors).toBeUndefined();
    const changes = async () =>
      (
        await sql<{ action: string; data: { before: Record<string, unknown>; after: Record<string, unknown> } }>`
          select action, data from ledger.changes where resource_type = 'schedule' and resource_name = 'default/hourly-echo' order by seq`.execute(t.db)
      ).rows;
    expect((await changes()).map((c) => c.action)).toEqual(['created']);

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const problems = watch(page, base);
    await page.goto(`${base}/console/schedules`);
    const row = page.locator('tr[data-schedule="default/hourly-echo"]');
    await expect(row.locator('td').nth(3).innerText()).resolves.toBe('enabled');
    await row.getByRole('button', { name: 'Disable schedule default/hourly-echo' }).focus();
    await page.keyboard.press('Enter');
    await page.waitForSelector('.flash-ok');
    await expect(page.locator('.flash-ok').innerText()).resolves.toContain('Schedule default/hourly-echo is disabled.');
    await expect(row.locator('td').nth(3).innerText()).resolves.toBe('disabled');
    await expect(row.innerText()).resolves.toContain('none while disabled');
    await shot(page, '36-schedule-disabled');

    const [, disabled] = await changes();
    expect(disabled?.action).toBe('updated');
    expect(disabled?.data.before.state).toBe('ENABLED');
    expect({ ...disabled?.data.after, state: 'ENABLED' }).toEqual(disabled?.data.before);

    // the same state again changes nothing and records nothing
    const again = await gql<{ setScheduleState: { state: string } }>('mutation { setScheduleState(name: "hourly-echo", state: "DISABLED") { state } }');
    expect(again.data?.setScheduleState.state).toBe('DISABLED');
    expect(await changes()).toHaveLength(2);
    const wrong = await gql('mutation { setScheduleState(name: "hourly-echo", state: "PAUSED") { state } }');
    expect(wrong.errors?.[0]?.message).toMatch(/state must be ENABLED or DISABLED/);

    await row.getByRole('button', { name: 'Enable schedule default/hourly-echo' }).focus();
    await page.keyboard.press('Enter');
    await page.waitForSelector('.flash-ok');
    await expect(row.locator('td').nth(3).innerText()).resolves.toBe('enabled');
    const [, , enabled] = await changes();
    expect(enabled?.data.after).toEqual(disabled?.data.before);
    expect(problems).toEqual({ errors: [], failed: [], foreign: [] });
    await context.close();
  }, 120_000);

  it('lists streams with their shards, retention and each mapping\'s state and records behind its checkpoint per shard, on the queues page and the overview', async () => {
    const setup = await gql<{ paused: { id: string }; live: { id: string } }>(`mutation {
      createStream(input: { name: "orders", shardCount: 2, retentionHours: 48 }) { name }
      paused: createStreamEventSourceMapping(input: { streamName: "orders", functionName: "echo", startingPosition: TRIM_HORIZON, enabled: false }) { id }
      live: createStreamEventSourceMapping(input: { streamName: "orders", functionName: "echo", startingPosition: TRIM_HORIZON, batchSize: 100 }) { id }
    }`);
    expect(setup.errors).toBeUndefined();
    const records = Array.from({ length: 12 }, (_, i) => ({ partitionKey: `customer-${i}`, data: Buffer.from(`{"n":${i}}`).toString('base64') }));
    expect((await gql('mutation($r: [PutRecordInput!]!) { putRecords(streamName: "orders", records: $r) { shardId } }', { r: records })).errors).toBeUndefined();
    const stream = async () =>
      (
        await gql<{ stream: { shards: { shardId: string; lastSequenceNumber: string }[]; eventSourceMappings: { id: string; checkpoints: { shardId: string; sequenceNumber: string }[] }[] } }>(
          'query { stream(name: "orders") { shards { shardId lastSequenceNumber } eventSourceMappings { id checkpoints { shardId sequenceNumber } } } }',
        )
      ).data?.stream;
    // the enabled mapping catches up: its checkpoint reaches every shard's last record
    await until('the live mapping to catch up', async () => {
      const s = await stream();
      const live = s?.eventSourceMappings.find((m) => m.id === setup.data?.live.id);
      return !!s && s.shards.every((h) => live?.checkpoints.some((c) => c.shardId === h.shardId && c.sequenceNumber === h.lastSequenceNumber));
    });
    const shards = (await stream())?.shards ?? [];
    expect(shards.reduce((n, h) => n + Number(h.lastSequenceNumber), 0)).toBe(12);

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const problems = watch(page, base);
    await page.goto(`${base}/console/queues`);
    const section = page.locator('#stream-orders');
    await expect(section.locator('h2').innerText()).resolves.toBe('Stream orders');
    await expect(section.locator('dl').innerText()).resolves.toMatch(/Shards\s+2[\s\S]*Retention\s+48 hours[\s\S]*Records written\s+12/i);
    const paused = section.locator(`tr[data-stream-mapping="${setup.data?.paused.id}"]`);
    const live = section.locator(`tr[data-stream-mapping="${setup.data?.live.id}"]`);
    await expect(paused.locator('td').nth(1).innerText()).resolves.toBe('disabled');
    await expect(live.locator('td').nth(1).innerText()).resolves.toBe('enabled');
    for (const h of shards) {
      // the disabled mapping has read nothing: every record of the shard is behind it
      await expect(paused.locator(`li[data-shard="${h.shardId}"]`).innerText()).resolves.toBe(`${h.shardId}: ${Number(h.lastSequenceNumber)} behind`);
      await expect(live.locator(`li[data-shard="${h.shardId}"]`).innerText()).resolves.toBe(`${h.shardId}: 0 behind`);
    }
    await shot(page, '37-streams');

    await page.goto(`${base}/console/`);
    await expect(page.locator(`#now tr[data-stream-mapping="${setup.data?.paused.id}"]`).innerText()).resolves.toMatch(/^stream orders → echo\s+disabled\s+12\s/);
    await expect(page.locator(`#now tr[data-stream-mapping="${setup.data?.live.id}"]`).innerText()).resolves.toMatch(/^stream orders → echo\s+enabled\s+0\s/);
    expect(problems).toEqual({ errors: [], failed: [], foreign: [] });
    await context.close();
  }, 120_000);

  it('the function, schedules and proof pages fit a phone screen', async () => {
    const id = await invokeAsync();
    await succeeded(id);
    const created = await gql('mutation { createSchedule(input: { name: "nightly-echo", expression: "cron(0 3 * * ? *)", targetFunction: "echo" }) { id } }');
    expect(created.errors).toBeUndefined();

    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const small = await phone.newPage();
    const problems = watch(small, base);
    for (const [name, url] of [
      ['32-phone-function', '/console/functions/echo'],
      ['33-phone-schedules', '/console/schedules'],
      ['34-phone-proof', `/console/invocations/${id}/proof`],
      ['35-phone-queues', '/console/queues'],
    ] as const) {
      await small.goto(`${base}${url}`);
      await expect(small.locator('h1').count(), url).resolves.toBe(1);
      // nothing wider than the screen except inside scrollable tables
      const overflow = await small.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      expect(overflow, url).toBeLessThanOrEqual(1);
      await shot(small, name);
    }
    expect(problems).toEqual({ errors: [], failed: [], foreign: [] });
    await phone.close();
  }, 120_000);
});
