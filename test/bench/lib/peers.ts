// The peers' names as the tables show them, with the version installed from npm, so a
// result always says which release it was measured against.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './proc.ts';

function installedVersion(pkg: string): string {
  const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string };
  return manifest.version;
}

export const GRAPHILE_WORKER = `graphile-worker ${installedVersion('graphile-worker')}`;
export const PG_BOSS = `pg-boss ${installedVersion('pg-boss')}`;
