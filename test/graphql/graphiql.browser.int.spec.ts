// GraphiQL in a real headless Chromium: the page loads with no network beyond this
// server (no CDN), runs its default `invoke` mutation, and shows the result.
import { existsSync } from 'node:fs';
import { listen, type Listening } from '../helpers/http.ts';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from './harness.ts';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  console.warn(
    `\n!!! SKIPPING the GraphiQL browser test: ${CHROMIUM} is missing. Install it with \`apt-get install -y chromium\` to run it. !!!\n`,
  );
}

describe.skipIf(!haveChromium)('GraphiQL in Chromium', () => {
  let h: Harness;
  let server: Listening | undefined;
  let base: string;
  let browser: Browser;

  beforeAll(async () => {
    h = await createHarness();
    server = await listen(h.app.fetch);
    base = server.url;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await h?.close();
  });

  it('opens GraphiQL offline, runs the default invoke mutation and shows its result', async () => {
    const page = await browser.newPage();
    const foreign: string[] = [];
    const pageErrors: string[] = [];
    page.on('request', (req) => {
      const url = req.url();
      if (!url.startsWith(base) && !url.startsWith('data:') && !url.startsWith('blob:')) foreign.push(url);
    });
    page.on('pageerror', (e) => pageErrors.push(e.message));

    const res = await page.goto(`${base}/graphql`, { waitUntil: 'load' });
    expect(res?.status()).toBe(200);
    await page.waitForSelector('.graphiql-execute-button', { timeout: 60_000 });
    // the editor holds the default query
    await page.waitForFunction(() => document.body.innerText.includes('InvokeEcho'), undefined, { timeout: 30_000 });
    await page.click('.graphiql-execute-button');
    await page.waitForFunction(() => document.body.innerText.includes('SUCCEEDED'), undefined, { timeout: 30_000 });
    // Monaco renders spaces as no-break spaces
    const text = (await page.evaluate(() => document.body.innerText)).replace(/\u00a0/g, ' ');
    expect(text).toContain('"status": "SUCCEEDED"');
    expect(text).toMatch(/"hello": "ledger"/);
    expect(text).toContain('"type": "ACCEPTED"');
    await page.screenshot({ path: `${process.env.TMPDIR ?? '/tmp'}/graphiql-invoke.png` });

    // the invocation really happened
    const r = await h.gql(`{ invocations(filter: { functionName: "echo" }) { totalCount } }`);
    expect(r.data?.invocations.totalCount).toBe(1);
    expect(foreign).toEqual([]);
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 120_000);
});

if (!haveChromium) {
  it.skip(`GraphiQL browser test skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`, () => {});
}
