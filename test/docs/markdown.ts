// The fenced code blocks of a Markdown file, with the `<!-- doc-test: … -->` comment that may
// precede one: `skip: why` (not run, with the reason), `restart` (the server restarts first,
// as the text before it asks the reader to do).
import { readFileSync } from 'node:fs';

export interface CodeBlock {
  file: string;
  /** 1-based line of the opening fence */
  line: number;
  lang: string;
  code: string;
  directive: string | null;
}

export function codeBlocks(file: string): CodeBlock[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i] as string);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] as string); i++) body.push(lines[i] as string);
    const before = lines.slice(0, start).reverse().find((l) => l.trim() !== '');
    const directive = before ? (/^<!--\s*doc-test:\s*(.*?)\s*-->$/.exec(before.trim())?.[1] ?? null) : null;
    blocks.push({ file, line: start + 1, lang: open[1] ?? '', code: body.join('\n'), directive });
  }
  return blocks;
}

/** One SQL block as statements: split at a `;` that ends a line. */
export function sqlStatements(code: string): string[] {
  return code
    .split(/;[ \t]*(?:\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.split('\n').some((l) => l.trim() !== '' && !l.trim().startsWith('--')));
}
