// A raw SSE client over a plain TCP socket for the feed tests. It can stop reading for
// real (node:http's client keeps draining the socket into memory while "paused"), so
// the server sees what a stalled browser tab does to it: full socket buffers.
import net from 'node:net';

export interface SseFrame {
  id: string | null;
  event: string;
  data: string;
}

export interface SseClient {
  frames: SseFrame[];
  status: number | null;
  /** the events' payloads: data.invocationEvents of every `next` frame with data */
  events(): Record<string, unknown>[];
  errors(): { message: string; extensions?: Record<string, unknown> }[];
  readonly closed: boolean;
  readonly completed: boolean;
  pause(): void;
  resume(): void;
  until(what: string, pred: () => boolean, ms?: number): Promise<void>;
  close(): void;
}

/** Decodes HTTP/1.1 chunked transfer coding, incrementally. */
class Dechunker {
  private buf = Buffer.alloc(0);
  private left = -1; // bytes of the current chunk still to come; -1: a size line is next

  push(data: Buffer): Buffer {
    this.buf = Buffer.concat([this.buf, data]);
    const out: Buffer[] = [];
    for (;;) {
      if (this.left < 0) {
        const eol = this.buf.indexOf('\r\n');
        if (eol === -1) break;
        const line = this.buf.subarray(0, eol).toString('latin1');
        this.buf = this.buf.subarray(eol + 2);
        if (line === '') continue; // the CRLF after a chunk
        this.left = Number.parseInt(line.split(';')[0] as string, 16);
        if (this.left === 0) break;
      }
      if (this.buf.length === 0) break;
      const take = Math.min(this.left, this.buf.length);
      out.push(this.buf.subarray(0, take));
      this.buf = this.buf.subarray(take);
      this.left -= take;
      if (this.left === 0) this.left = -1;
    }
    return Buffer.concat(out);
  }
}

export function openSse(baseUrl: string, query: string, headers: Record<string, string> = {}, o: { paused?: boolean } = {}): Promise<SseClient> {
  const url = new URL('/graphql', baseUrl);
  const body = JSON.stringify({ query });
  return new Promise((resolve, reject) => {
    let raw = Buffer.alloc(0);
    let headersDone = false;
    let chunked = false;
    const dechunk = new Dechunker();
    let text = '';
    let closed = false;
    let completed = false;
    const frames: SseFrame[] = [];
    const waiters = new Set<() => void>();
    const notify = () => {
      for (const w of [...waiters]) w();
    };
    const socket = net.connect({ host: url.hostname, port: Number(url.port) });
    const client: SseClient = {
      frames,
      status: null,
      events: () =>
        frames
          .filter((f) => f.event === 'next' && f.data)
          .map((f) => JSON.parse(f.data) as { data?: { invocationEvents?: Record<string, unknown> } })
          .flatMap((m) => (m.data?.invocationEvents ? [m.data.invocationEvents] : [])),
      errors: () =>
        frames
          .filter((f) => f.event === 'next' && f.data)
          .flatMap((f) => (JSON.parse(f.data) as { errors?: { message: string; extensions?: Record<string, unknown> }[] }).errors ?? []),
      get closed() {
        return closed;
      },
      get completed() {
        return completed;
      },
      pause: () => socket.pause(),
      resume: () => socket.resume(),
      async until(what, pred, ms = 90_000) {
        const deadline = Date.now() + ms;
        while (!pred()) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; ${frames.length} frames, closed ${closed}`);
          await new Promise<void>((r) => {
            const w = () => {
              waiters.delete(w);
              clearTimeout(t);
              r();
            };
            const t = setTimeout(w, 100);
            waiters.add(w);
          });
        }
      },
      close: () => socket.destroy(),
    };
    const sse = (chunk: string) => {
      text += chunk;
      let cut: number;
      while ((cut = text.indexOf('\n\n')) !== -1) {
        const block = text.slice(0, cut);
        text = text.slice(cut + 2);
        const frame: SseFrame = { id: null, event: 'message', data: '' };
        let comment = true;
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          comment = false;
          const at = line.indexOf(':');
          const field = at === -1 ? line : line.slice(0, at);
          const value = at === -1 ? '' : line.slice(at + 1).replace(/^ /, '');
          if (field === 'id') frame.id = value;
          else if (field === 'event') frame.event = value;
          else if (field === 'data') frame.data += value;
        }
        if (comment) continue;
        frames.push(frame);
        if (frame.event === 'complete') completed = true;
      }
    };
    socket.on('connect', () => {
      const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      socket.write(
        `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\ncontent-type: application/json\r\naccept: text/event-stream\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`,
      );
    });
    socket.on('data', (data: Buffer) => {
      if (!headersDone) {
        raw = Buffer.concat([raw, data]);
        const end = raw.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = raw.subarray(0, end).toString('latin1');
        client.status = Number(head.split(' ')[1]);
        chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head);
        headersDone = true;
        data = raw.subarray(end + 4);
        if (o.paused) socket.pause();
        resolve(client);
      }
      sse((chunked ? dechunk.push(data) : data).toString('utf8'));
      notify();
    });
    const end = () => {
      closed = true;
      notify();
    };
    socket.on('close', end);
    socket.on('error', (e) => {
      end();
      if (!headersDone) reject(e);
    });
  });
}
