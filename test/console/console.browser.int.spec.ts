// The console in a real headless Chromium against a real `invoke-ledger start` (API and
// worker, keys on): sign in, find a failed async invocation by its error type, open its
// timeline and read its attempt logs, fix the bug, redrive it from the dead letters page
// and watch the new events arrive on the open timeline without a reload. Then every page:
// no console errors, no failed requests, nothing fetched from another origin, each
// screenshotted into test-results/console/ (phone-sized too).
//
// Chromium is required: this test fails, it does not skip, when /usr/bin/chromium is
// missing (apt-get install -y chromium).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, type CreatedApiKey } from '../../db/keys.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { freePort } from '../helpers/pg-admin.ts';
import { endProcess, spawnService, type ServiceProcess } from '../helpers/processes.ts';
import { watch, until, graphqlData } from './browser.ts';

const CHROMIUM = '/usr/bin/chromium';
const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
export const SHOTS = fileURLToPath(new URL('../../test-results/console/', import.meta.url));

let t: TestDatabase;
let server: ServiceProcess | undefined;
let base: string;
let browser: Browser;
let context: BrowserContext;
let key: CreatedApiKey;
let auditOnly: CreatedApiKey;
let flagDir: string;
let fixedFlag: string;

/** What went wrong on a page: console errors, page errors, failed or refused requests, other origins. */

async function statusOf(id: string): Promise<string> {
  return (await api<{ invocation: { status: string } }>('query($id: ID!) { invocation(id: $id) { status } }', { id })).invocation.status;
}

/** Waits for a state the worker reaches by itself, reading it through the API. */

const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

let chargeId: string;
let shipId: string;

const api = <T>(query: string, variables?: Record<string, unknown>) => graphqlData<T>(base, key.token, query, variables);

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  flagDir = await mkdtemp(path.join(tmpdir(), 'console-flag-'));
  fixedFlag = path.join(flagDir, 'fixed');
  t = await createTestDatabase();
  key = await createApiKey(t.db, { name: 'console-test', scopes: ['invoke', 'admin', 'audit'] });
  auditOnly = await createApiKey(t.db, { name: 'auditor', scopes: ['audit'] });
  server = await spawnService('all', await freePort(), {
    DATABASE_URL: t.ownerUrl,
    FUNCTIONS_DIR: FIXTURES,
    LEDGER_AUTH: 'on',
    POLL_INTERVAL_MS: '200',
    CONSOLE_FIXED_FLAG: fixedFlag,
  });
  base = `http://127.0.0.1:${server.port}`;

  // some traffic: sync successes, a declined charge and a carrier timeout, both dead-lettered
  for (let i = 0; i < 5; i++) await api('mutation($i: Int!) { invoke(functionName: "echo", payload: { order: $i }) { id } }', { i });
  chargeId = (await api<{ invokeAsync: { id: string } }>('mutation { invokeAsync(functionName: "charge", payload: { card: "4242" }) { id } }')).invokeAsync.id;
  shipId = (await api<{ invokeAsync: { id: string } }>('mutation { invokeAsync(functionName: "ship", payload: { order: 7 }) { id } }')).invokeAsync.id;
  await until('the charge to be dead-lettered', async () => (await statusOf(chargeId)) === 'DEAD_LETTERED');
  await until('the shipment to be dead-lettered', async () => (await statusOf(shipId)) === 'DEAD_LETTERED');
  // a queue delivered to echo, for the queues page
  await api('mutation { createQueue(input: { name: "orders-in" }) { name } }');
  await api('mutation { createEventSourceMapping(input: { queueName: "orders-in", functionName: "echo", enabled: false }) { id } }');
  await api('mutation { sendMessage(queueName: "orders-in", body: { order: 1 }) { messageId } }');

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
}, 180_000);

afterAll(async () => {
  await context?.close();
  await browser?.close();
  if (server) await endProcess(server);
  if (flagDir) rmSync(flagDir, { recursive: true, force: true });
});

describe('the console in Chromium', () => {
  it('sign in, find the failed invocation by error type, read its logs, redrive it and watch it succeed live', async () => {
    const page = await context.newPage();
    const problems = watch(page, base);

    // a browser at / lands on the sign-in page
    await page.goto(`${base}/`);
    expect(new URL(page.url()).pathname).toBe('/console/sign-in');
    // the key field is the first thing to type into, and it has a label
    await expect(page.getByLabel('API key').isVisible()).resolves.toBe(true);
    await shot(page, '01-sign-in');
    await page.getByLabel('API key').fill(key.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${base}/console/`);
    expect(page.url()).not.toContain(key.token);
    // the key is not readable by scripts
    expect(await page.evaluate(() => document.cookie)).not.toContain('il_');

    // Invocations → search asynchronous ones failing with PaymentDeclined
    await page.getByRole('link', { name: 'Invocations', exact: true }).click();
    await page.getByLabel('Type', { exact: true }).selectOption('ASYNC');
    await page.getByLabel('Error type').fill('PaymentDeclined');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/error=PaymentDeclined/);
    const rows = page.locator('#invocation-list tbody tr');
    await expect(rows.count()).resolves.toBe(1);
    await expect(rows.first().innerText()).resolves.toMatch(/charge[\s\S]*dead-lettered[\s\S]*PaymentDeclined/);
    await shot(page, '02-invocations-search');

    // its timeline: two failed attempts, each with its log, then the dead letter
    await page.getByRole('link', { name: `Invocation ${chargeId}` }).click();
    await page.waitForURL(`${base}/console/invocations/${chargeId}`);
    const timeline = page.locator('#timeline');
    await expect(timeline.locator('li.attempt').count()).resolves.toBe(2);
    const text = await timeline.innerText();
    expect(text).toMatch(/Attempt 1: failed/);
    expect(text).toMatch(/Attempt 2: failed/);
    expect(text).toMatch(/PaymentDeclined: card 4242 was declined/);
    expect(text).toMatch(/dead lettered[\s\S]*RetriesExhausted/);
    // failed attempts open their logs
    await expect(page.locator('li.attempt[data-attempt="1"] .attempt-log pre').innerText()).resolves.toMatch(/charging card 4242 \(attempt 1\)/);
    await expect(page.locator('li.attempt[data-attempt="2"] .attempt-log pre').innerText()).resolves.toMatch(/charging card 4242 \(attempt 2\)/);
    await shot(page, '03-invocation-timeline');
    // the live feed is connected before we act
    await page.waitForSelector('[data-live-state][data-state="on"]');
    await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));

    // fix the bug, then redrive from the dead letters page (another tab)
    writeFileSync(fixedFlag, 'fixed');
    const dl = await context.newPage();
    const dlProblems = watch(dl, base);
    await dl.goto(`${base}/console/dead-letters`);
    await dl.getByRole('link', { name: /dead letters of charge with PaymentDeclined/ }).click();
    await dl.waitForURL(/error=PaymentDeclined/);
    await shot(dl, '04-dead-letters');
    await dl.getByRole('checkbox', { name: `Select invocation ${chargeId}` }).check();
    await dl.getByRole('button', { name: 'Redrive selected' }).click();
    await dl.waitForSelector('.flash-ok');
    await expect(dl.locator('.flash-ok').innerText()).resolves.toMatch(/Redrove 1 invocation/);
    await shot(dl, '05-dead-letters-redriven');

    // the open timeline shows the redrive and the new attempt without a reload
    await page.waitForSelector('li.event-redriven', { timeout: 30_000 });
    await page.waitForSelector('li.attempt[data-attempt="3"].attempt-succeeded', { timeout: 30_000 });
    expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);
    await expect(page.locator('#invocation .status').first().innerText()).resolves.toBe('succeeded');
    // a successful attempt's log starts folded
    await expect(page.locator('li.attempt[data-attempt="3"] details.attempt-log').getAttribute('open')).resolves.toBeNull();
    await page.locator('li.attempt[data-attempt="3"] .attempt-log summary').click();
    await expect(page.locator('li.attempt[data-attempt="3"] .attempt-log pre').innerText()).resolves.toMatch(/attempt 3/);
    expect(await statusOf(chargeId)).toBe('SUCCEEDED');
    await shot(page, '06-invocation-redriven-live');

    // and the redrive was recorded as any redrive through the API
    const events = await api<{ invocation: { events: { type: string; data: { by?: string } }[] } }>(
      'query($id: ID!) { invocation(id: $id) { events { type data } } }',
      { id: chargeId },
    );
    expect(events.invocation.events.find((e) => e.type === 'REDRIVEN')?.data.by).toBe('graphql');

    for (const p of [problems, dlProblems]) expect(p).toEqual({ errors: [], failed: [], foreign: [] });
    await dl.close();
    await page.close();
  }, 180_000);

  it('every page renders with no console errors, no failed requests and nothing from another origin', async () => {
    const page = await context.newPage();
    const problems = watch(page, base);
    const pages: [string, string, (p: Page) => Promise<void>][] = [
      ['07-overview-hour', '/console/', (p) => p.waitForSelector('#charts .uplot').then(() => undefined)],
      ['08-overview-day', '/console/?range=day', (p) => p.waitForSelector('#charts .uplot').then(() => undefined)],
      ['09-overview-week-charge', '/console/?range=week&fn=charge', (p) => p.waitForSelector('#charts .uplot').then(() => undefined)],
      ['10-functions', '/console/functions', async () => {}],
      ['11-function-charge', '/console/functions/charge', async () => {}],
      ['12-invocations', '/console/invocations', async () => {}],
      ['13-invocation-ship', `/console/invocations/${shipId}`, (p) => p.waitForSelector('[data-live-state][data-state="on"]').then(() => undefined)],
      ['14-dead-letters', '/console/dead-letters', async () => {}],
      ['15-queues', '/console/queues', async () => {}],
    ];
    for (const [name, url, ready] of pages) {
      const res = await page.goto(`${base}${url}`);
      expect(res?.status(), url).toBe(200);
      await ready(page);
      await expect(page.locator('h1').innerText()).resolves.not.toBe('');
      // every form control has an accessible name
      const unlabelled = await page.evaluate(() =>
        [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
          .filter((el) => !(el as HTMLElement).hidden && !(el as HTMLInputElement).labels?.length && !el.getAttribute('aria-label') && !(el.textContent ?? '').trim())
          .map((el) => el.outerHTML.slice(0, 80)),
      );
      expect(unlabelled, url).toEqual([]);
      await shot(page, name);
    }
    // the charts draw the week's invocations of charge: 1 accepted
    await page.goto(`${base}/console/?range=week&fn=charge`);
    await page.waitForSelector('#charts .uplot');
    const rate = await page.locator('figure[data-chart="rate"] .chart-canvas').getAttribute('data-chart-data');
    const chart = JSON.parse(rate ?? '{}') as { series: { values: (number | null)[] }[]; x: number[] };
    expect(chart.series[0]?.values.reduce<number>((n, v) => n + (v ?? 0), 0)).toBeGreaterThan(0);

    // keyboard: the first Tab reaches the skip link, which moves focus to the content
    await page.goto(`${base}/console/dead-letters`);
    await page.keyboard.press('Tab');
    await expect(page.evaluate(() => document.activeElement?.textContent?.trim())).resolves.toBe('Skip to content');
    await page.keyboard.press('Enter');
    await expect(page.evaluate(() => document.activeElement?.id)).resolves.toBe('main');

    // a mapping can be enabled from the queues page
    await page.goto(`${base}/console/queues`);
    await page.getByRole('button', { name: 'Enable the mapping from orders-in to echo' }).click();
    await page.waitForSelector('.flash-ok');
    await expect(page.locator('.flash-ok').innerText()).resolves.toMatch(/orders-in to echo is enabled/);

    // a phone
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const cookies = await context.cookies();
    await phone.addCookies(cookies);
    const small = await phone.newPage();
    const smallProblems = watch(small, base);
    for (const [name, url] of [
      ['16-phone-invocation', `/console/invocations/${chargeId}`],
      ['17-phone-dead-letters', '/console/dead-letters'],
      ['18-phone-overview', '/console/'],
    ]) {
      await small.goto(`${base}${url}`);
      // nothing wider than the screen except inside scrollable tables
      const overflow = await small.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      expect(overflow, url).toBeLessThanOrEqual(1);
      await shot(small, name as string);
    }
    await phone.close();

    expect(problems).toEqual({ errors: [], failed: [], foreign: [] });
    expect(smallProblems).toEqual({ errors: [], failed: [], foreign: [] });
    await page.close();
  }, 180_000);

  it('a key with only audit sees no actions; GraphiQL in the console runs on the session key, at /graphql it offers a header template', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    const problems = watch(page, base);
    await page.goto(`${base}/console/dead-letters`);
    await page.getByLabel('API key').fill(auditOnly.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${base}/console/dead-letters`);
    await expect(page.getByRole('button', { name: 'Redrive selected' }).count()).resolves.toBe(0);
    await expect(page.getByText('Redriving needs a key with the admin scope.').count()).resolves.toBe(1);

    expect(problems).toEqual({ errors: [], failed: [], foreign: [] });
    await ctx.close();

    // GraphiQL from the console (signed in with every scope): no header to paste, the
    // default invoke runs with the session's key
    const full = await context.newPage();
    const fullProblems = watch(full, base);
    await full.goto(`${base}/console/`);
    await full.getByRole('link', { name: 'GraphQL' }).click();
    await full.waitForSelector('.graphiql-execute-button', { timeout: 60_000 });
    await full.waitForFunction(() => document.body.innerText.includes('InvokeEcho'), undefined, { timeout: 30_000 });
    await full.click('.graphiql-execute-button');
    await full.waitForFunction(() => document.body.innerText.includes('SUCCEEDED'), undefined, { timeout: 30_000 });
    const text = (await full.evaluate(() => document.body.innerText)).replace(/\u00a0/g, ' ');
    expect(text).toContain('"status": "SUCCEEDED"');
    expect(text).not.toMatch(/Missing Authorization header/);
    await shot(full, '19-console-graphiql');
    expect(fullProblems).toEqual({ errors: [], failed: [], foreign: [] });
    await full.close();

    // GraphiQL at /graphql, opened for the first time (GraphiQL keeps its tabs in the
    // browser's storage): the headers pane holds the template to fill in
    const fresh = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const g = await fresh.newPage();
    await g.goto(`${base}/graphql`);
    await g.waitForSelector('.graphiql-execute-button', { timeout: 60_000 });
    // Monaco renders spaces as no-break spaces
    await g.waitForFunction(() => /"Authorization":\s"Bearer\s<paste\sa\skey/.test(document.body.innerText), undefined, { timeout: 30_000 });
    await shot(g, '20-graphiql-headers-template');
    await fresh.close();
  }, 180_000);
});
