import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HandlerPathError, resolveHandlerPath } from './index.ts';

const root = mkdtempSync(path.join(tmpdir(), 'handler-path-'));
const dir = path.join(root, 'functions');
mkdirSync(path.join(dir, 'nested'), { recursive: true });
writeFileSync(path.join(dir, 'echo.ts'), 'export const handler = () => 1;');
writeFileSync(path.join(dir, 'nested', 'deep.mjs'), 'export const run = () => 1;');
writeFileSync(path.join(root, 'secret.ts'), 'export const handler = () => "secret";');
symlinkSync(path.join(root, 'secret.ts'), path.join(dir, 'link-out.ts'));
symlinkSync(root, path.join(dir, 'dir-out'));
symlinkSync(path.join(dir, 'echo.ts'), path.join(dir, 'link-in.ts'));

afterAll(() => rmSync(root, { recursive: true, force: true }));

function refusal(handler: string): HandlerPathError {
  try {
    resolveHandlerPath(dir, handler);
  } catch (err) {
    if (err instanceof HandlerPathError) return err;
    throw err;
  }
  throw new Error(`expected ${handler} to be refused`);
}

describe('resolveHandlerPath', () => {
  it('resolves relative, absolute, nested and extensionless paths with an optional export', () => {
    const echo = path.join(dir, 'echo.ts');
    expect(resolveHandlerPath(dir, 'echo.ts')).toEqual({ file: echo, exportName: 'handler' });
    expect(resolveHandlerPath(dir, 'echo')).toEqual({ file: echo, exportName: 'handler' });
    expect(resolveHandlerPath(dir, `${echo}#other`)).toEqual({ file: echo, exportName: 'other' });
    expect(resolveHandlerPath(dir, './nested/deep.mjs#run')).toEqual({ file: path.join(dir, 'nested', 'deep.mjs'), exportName: 'run' });
    expect(resolveHandlerPath(dir, 'link-in.ts')).toEqual({ file: echo, exportName: 'handler' });
  });

  it('refuses paths that escape the functions directory', () => {
    for (const handler of ['../secret.ts', 'nested/../../secret.ts', path.join(root, 'secret.ts'), '/etc/passwd', 'link-out.ts', 'dir-out/secret.ts']) {
      const err = refusal(handler);
      expect(err.code, handler).toBe('InvalidHandlerPath');
      expect(err.reason, handler).toBe('outside');
    }
  });

  it('refuses missing files, directories and malformed handlers', () => {
    expect(refusal('missing.ts').reason).toBe('missing');
    expect(refusal('nested').reason).toBe('missing');
    expect(refusal('').reason).toBe('invalid');
    expect(refusal('echo.ts#not-an-identifier').reason).toBe('invalid');
  });
});
