// Regenerates the sample output under every query of docs/audit.md: a scratch database
// on DATABASE_URL (or the machine's PostgreSQL), migrated, filled by the audit workload
// through the real writer, each query run as ledger_auditor, the ```text blocks rewritten.
//   npx tsx test/audit/render-samples.ts
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import { openDatabase } from '../../db/connection.ts';
import { migrate } from '../../db/migrate.ts';
import { adminQuery, databaseUrl } from '../helpers/pg-admin.ts';
import { COOKBOOK_PATH, formatLikePsql, RAW_TYPES, readCookbook } from './cookbook.ts';
import { runAuditWorkload } from './workload.ts';

const admin = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const name = `audit_samples_${randomBytes(4).toString('hex')}`;
await adminQuery(admin, `create database "${name}"`);
const url = databaseUrl(admin, name);
try {
  await migrate(url);
  const app = openDatabase(url);
  try {
    console.log(await runAuditWorkload(app.db));
  } finally {
    await app.close();
  }
  const auditor = new pg.Client({ connectionString: url });
  await auditor.connect();
  try {
    await auditor.query(`set role ledger_auditor; set timezone = 'UTC'`);
    let markdown = readFileSync(COOKBOOK_PATH, 'utf8');
    // replace from the end so earlier offsets stay valid
    for (const q of readCookbook(markdown).reverse()) {
      if (!q.sample) throw new Error(`no \`\`\`text block after: ${q.title}`);
      const result = await auditor.query({ text: q.sql, types: RAW_TYPES });
      markdown = markdown.slice(0, q.sample.start) + formatLikePsql(result) + markdown.slice(q.sample.end);
    }
    writeFileSync(COOKBOOK_PATH, markdown);
    console.log(`rewrote the samples in ${COOKBOOK_PATH}`);
  } finally {
    await auditor.end();
  }
} finally {
  await adminQuery(admin, `drop database if exists "${name}" with (force)`);
}
