// TRACE_URL_TEMPLATE (README.md#configuration): the console's trace link is built from it,
// so a value the link cannot be made from is refused at start, not shown as a broken link.
// LEDGER_DB_ROLE is configuration: read in apps/cli/config.ts only, and handed to
// db/connection.ts as an option.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULT_APP_ROLE } from '../../db/connection.ts';
import { databaseRole, loadConfig } from './config.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('databaseRole', () => {
  it('is ledger_app when unset, the login role when empty, else the one named', () => {
    expect(databaseRole({})).toBe(DEFAULT_APP_ROLE);
    expect(databaseRole({ LEDGER_DB_ROLE: '' })).toBe('');
    expect(databaseRole({ LEDGER_DB_ROLE: 'ledger_ops' })).toBe('ledger_ops');
  });

  it('is the only reader of LEDGER_DB_ROLE in apps/ and db/', () => {
    const readers = execFileSync('git', ['grep', '-l', 'env.LEDGER_DB_ROLE', '--', 'apps', 'db', ':!*.spec.ts'], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n');
    expect(readers).toEqual(['apps/cli/config.ts']);
  });
});

describe('TRACE_URL_TEMPLATE', () => {
  it('is an http(s) URL with {traceId}, or unset', () => {
    expect(loadConfig({}, { TRACE_URL_TEMPLATE: 'http://jaeger:16686/trace/{traceId}' }).TRACE_URL_TEMPLATE).toBe('http://jaeger:16686/trace/{traceId}');
    expect(loadConfig({}).TRACE_URL_TEMPLATE).toBeUndefined();
    expect(() => loadConfig({}, { TRACE_URL_TEMPLATE: 'http://jaeger:16686/trace/' })).toThrow(/TRACE_URL_TEMPLATE: must be an http\(s\) URL containing \{traceId\}/);
    expect(() => loadConfig({}, { TRACE_URL_TEMPLATE: 'javascript:alert(1)//{traceId}' })).toThrow(/TRACE_URL_TEMPLATE/);
  });
});
