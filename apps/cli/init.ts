// `invoke-ledger init NAME`: a new function in FUNCTIONS_DIR, the way `sam init` starts one:
// a typed TypeScript handler (types from @types/aws-lambda) and a test for it that runs
// with node's own test runner.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CliError, type Output } from './cli.ts';

const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,64}$/;

export interface Scaffold {
  handlerFile: string;
  testFile: string;
}

export async function scaffoldFunction(name: string, dir: string, o: { force?: boolean } = {}): Promise<Scaffold> {
  if (!FUNCTION_NAME.test(name)) throw new CliError(`function name ${JSON.stringify(name)} must match [A-Za-z0-9_-]{1,64} (it becomes the file name)`);
  const handlerFile = path.join(dir, `${name}.ts`);
  const testFile = path.join(dir, `${name}.test.ts`);
  for (const f of [handlerFile, testFile]) {
    if (!o.force && existsSync(f)) throw new CliError(`${f} exists; pick another name or pass --force to overwrite it`);
  }
  await mkdir(dir, { recursive: true });
  await writeFile(handlerFile, handlerSource(name));
  await writeFile(testFile, testSource(name));
  return { handlerFile, testFile };
}

export function initNextSteps(name: string, s: Scaffold, functionsDir: string): string {
  const rel = (f: string) => path.relative(process.cwd(), f) || f;
  const inFunctionsDir = path.resolve(path.dirname(s.handlerFile)) === path.resolve(functionsDir);
  return [
    `created ${rel(s.handlerFile)} and ${rel(s.testFile)}`,
    '',
    'next:',
    `  node --import tsx --test ${rel(s.testFile)}     # its test`,
    inFunctionsDir
      ? '  npm start                                  # (re)start: FUNCTIONS_DIR is registered at start'
      : `  FUNCTIONS_DIR=${rel(path.dirname(s.handlerFile))} npm start    # functions are registered from FUNCTIONS_DIR at start`,
    `  curl -s -H "Authorization: Bearer $TOKEN" localhost:3000/invoke/${name} -d '{"name":"Ada"}'`,
    '',
  ].join('\n');
}

export async function initCommand(name: string, dir: string, functionsDir: string, o: { force?: boolean }, out: Output): Promise<number> {
  const s = await scaffoldFunction(name, dir, o);
  out.write(initNextSteps(name, s, functionsDir));
  return 0;
}

function handlerSource(name: string): string {
  return `// ${name}: an invoke-ledger function. Every *.ts file in FUNCTIONS_DIR that exports \`handler\`
// is registered at start under its file name; a changed file becomes a new version.
import type { Context } from 'aws-lambda';

/** Lambda's context fields this server fills, plus its own (see the README, "Functions"). */
export type ${pascal(name)}Context = Pick<Context, 'awsRequestId' | 'functionName' | 'getRemainingTimeInMillis'> & {
  /** the same on every attempt: a key for writes that must happen once */
  invocationId: string;
  /** 1 on the first try, 2 on the first retry, … */
  attempt: number;
  /** aborted at the timeout: pass it to fetch() and timers */
  signal: AbortSignal;
};

/** Optional: timeoutMs, memoryMb, maxRetries, retryBaseDelayMs, onSuccess, onFailure, … */
export const config = { timeoutMs: 3_000, maxRetries: 2 };

export interface ${pascal(name)}Event {
  name?: string;
}

export interface ${pascal(name)}Result {
  message: string;
  attempt: number;
}

export async function handler(event: ${pascal(name)}Event | null, context: ${pascal(name)}Context): Promise<${pascal(name)}Result> {
  const who = typeof event?.name === 'string' && event.name !== '' ? event.name : 'world';
  return { message: \`Hello, \${who}!\`, attempt: context.attempt };
}
`;
}

function testSource(name: string): string {
  return `// Runs with node's test runner: node --import tsx --test ${name}.test.ts
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { handler, type ${pascal(name)}Context } from './${name}.ts';

function context(overrides: Partial<${pascal(name)}Context> = {}): ${pascal(name)}Context {
  const deadline = Date.now() + 3_000;
  return {
    awsRequestId: '00000000-0000-4000-8000-000000000000',
    invocationId: '00000000-0000-4000-8000-000000000000',
    functionName: '${name}',
    attempt: 1,
    signal: new AbortController().signal,
    getRemainingTimeInMillis: () => deadline - Date.now(),
    ...overrides,
  };
}

test('greets by name', async () => {
  assert.deepEqual(await handler({ name: 'Ada' }, context()), { message: 'Hello, Ada!', attempt: 1 });
});

test('greets the world without a name, and reports the attempt', async () => {
  assert.deepEqual(await handler(null, context({ attempt: 2 })), { message: 'Hello, world!', attempt: 2 });
});
`;
}

function pascal(name: string): string {
  const p = name
    .split(/[-_]+/)
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join('');
  return /^[0-9]/.test(p) ? `Fn${p}` : p;
}
