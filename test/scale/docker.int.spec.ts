// What can be checked of the Docker image without a Docker engine (docs/scale.md, "Docker"):
// every path the Dockerfile copies exists, and the image's HEALTHCHECK script runs under
// plain Node: 0 while /healthz answers, 1 when nothing listens.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { listen } from '../helpers/http.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const HEALTHCHECK = path.join(ROOT, 'docker/healthcheck.mjs');

async function healthcheck(port: number): Promise<number> {
  try {
    await promisify(execFile)(process.execPath, [HEALTHCHECK], { env: { PATH: process.env.PATH ?? '', PORT: String(port) } });
    return 0;
  } catch (e) {
    return (e as { code?: number }).code ?? -1;
  }
}

describe('the Docker image, without a Docker engine', () => {
  it('copies only paths that exist', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    const sources = [...dockerfile.matchAll(/^COPY\s+(?:--from=build\s+\/app\/)?(\S+)\s+\S+$/gm)]
      .map((m) => m[1] as string)
      .filter((p) => !p.startsWith('--from=prod-deps') && p !== '.' && p !== 'node_modules');
    expect(sources).toEqual(expect.arrayContaining(['package.json', 'bin', 'apps', 'db', 'migrations', 'dist', 'docker/healthcheck.mjs']));
    // dist/ is built in the image; everything else comes from the checkout
    for (const p of sources.filter((s) => s !== 'dist')) expect(existsSync(path.join(ROOT, p)), p).toBe(true);
  });

  it('runs its health check under plain Node', async () => {
    const server = await listen(new Hono().get('/healthz', (c) => c.json({ ok: true })).fetch);
    try {
      expect(await healthcheck(server.port)).toBe(0);
    } finally {
      await server.close();
    }
    expect(await healthcheck(server.port)).toBe(1);
  });
});
