// What PostgreSQL can store, decided before anything is sent. Payloads, results and
// message bodies become `jsonb`, idempotency keys, error text and logs `text`; neither
// can hold U+0000, and jsonb refuses a lone UTF-16 surrogate (`"\ud800"`), which text
// would silently turn into U+FFFD. Deep nesting is refused here too: JSON nested a few
// thousand levels deep overflows the stack of JSON.stringify and of the structured
// clone that hands a payload to a handler's thread, so it could never run.
//
// Every entry point checks here (HTTP bodies, GraphQL arguments, queue messages,
// function outcomes), so that one value that cannot be stored is refused alone instead
// of failing the group commit it would have joined. Pure: no I/O, no imports.

/** Deepest JSON nesting accepted anywhere (docs/http-api.md#limits). */
export const MAX_JSON_DEPTH = 1000;

const SUSPECT = /[\u0000\ud800-\udfff]/;
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const UNSTORABLE_ALL = new RegExp(UNSTORABLE.source, 'g');

/** Why `text` cannot be stored as PostgreSQL text or inside jsonb; null when it can. */
export function whyNotStorableText(text: string): string | null {
  if (!SUSPECT.test(text)) return null;
  const m = UNSTORABLE.exec(text);
  if (!m) return null;
  const unit = m[0].charCodeAt(0);
  return unit === 0 ? 'holds U+0000 (NUL)' : `holds a lone surrogate (U+${unit.toString(16).toUpperCase()})`;
}

/** `text` with U+0000 and lone surrogates replaced by U+FFFD: for log lines and error text, which are kept rather than refused. */
export function storableText(text: string): string {
  return SUSPECT.test(text) ? text.replace(UNSTORABLE_ALL, '\ufffd') : text;
}

interface Frame {
  value: object;
  depth: number;
  parent: Frame | null;
  key: string | number | null;
}

/**
 * Why `value`, as JSON.stringify would write it, cannot be stored as jsonb; null when it
 * can. The answer names where: `a string holds U+0000 (NUL) at $.a[2]`. Iterative, so a
 * value nested far too deep is measured, not a stack overflow.
 */
export function whyNotStorableJson(value: unknown, maxDepth: number = MAX_JSON_DEPTH): string | null {
  const root = toJson(value, '');
  if (typeof root === 'string') {
    const why = whyNotStorableText(root);
    return why === null ? null : `a string ${why} at $`;
  }
  if (root === null || typeof root !== 'object') return null;
  const stack: Frame[] = [{ value: root, depth: 1, parent: null, key: null }];
  while (stack.length > 0) {
    const frame = stack.pop() as Frame;
    if (frame.depth > maxDepth) return `JSON nested more than ${maxDepth} levels deep`;
    const node = frame.value;
    if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) {
        const why = visit(stack, frame, i, toJson(node[i], i));
        if (why !== null) return why;
      }
    } else {
      const keys = Object.keys(node);
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i] as string;
        const child = toJson((node as Record<string, unknown>)[key], key);
        // JSON.stringify leaves these keys out
        if (child === undefined || typeof child === 'function' || typeof child === 'symbol') continue;
        const bad = whyNotStorableText(key);
        if (bad !== null) return `a key ${bad} at ${pathOf(frame)}`;
        const why = visit(stack, frame, key, child);
        if (why !== null) return why;
      }
    }
  }
  return null;
}

/** Checks a string child at once; queues an object child. */
function visit(stack: Frame[], parent: Frame, key: string | number, child: unknown): string | null {
  if (typeof child === 'string') {
    const why = whyNotStorableText(child);
    return why === null ? null : `a string ${why} at ${pathOf(parent, key)}`;
  }
  if (child !== null && typeof child === 'object') stack.push({ value: child, depth: parent.depth + 1, parent, key });
  return null;
}

/** What JSON.stringify writes for a value, one level: toJSON applied, boxed primitives unboxed. */
function toJson(value: unknown, key: string | number): unknown {
  if (value === null || typeof value !== 'object') return value;
  let v: unknown = value;
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') v = (v as { toJSON: (k: string) => unknown }).toJSON(String(key));
  if (v instanceof String || v instanceof Number || v instanceof Boolean) v = v.valueOf();
  return v;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
const MAX_PATH = 200;

function pathOf(frame: Frame, last?: string | number): string {
  const parts: string[] = [];
  if (last !== undefined) parts.push(segment(last));
  for (let f: Frame | null = frame; f !== null && f.key !== null; f = f.parent) parts.push(segment(f.key));
  const path = `$${parts.reverse().join('')}`;
  return path.length > MAX_PATH ? `${path.slice(0, MAX_PATH)}…` : path;
}

function segment(key: string | number): string {
  if (typeof key === 'number') return `[${key}]`;
  return IDENTIFIER.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}
