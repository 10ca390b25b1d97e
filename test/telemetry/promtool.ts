// promtool (Debian package `prometheus`; .ci/run installs it) run on text or files.
import { spawnSync } from 'node:child_process';

/** Runs promtool with `stdin`; ok is its exit status 0, output what it printed. */
export function promtool(args: string[], stdin?: string): { ok: boolean; output: string } {
  const r = spawnSync('promtool', args, { input: stdin ?? '', encoding: 'utf8' });
  if (r.error) throw new Error(`promtool is not installed (apt-get install prometheus): ${r.error.message}`);
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}
