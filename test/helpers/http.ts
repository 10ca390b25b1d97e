// Serves a Hono app on an ephemeral loopback port for a test, and closes it (open
// keep-alive connections included) when the test is done.
import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import { serve } from '@hono/node-server';
import { answerMalformedRequests } from '../../apps/api/body.ts';

export interface Listening {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function listen(fetch: (request: Request) => Response | Promise<Response>): Promise<Listening> {
  let server!: http.Server;
  const port = await new Promise<number>((resolve) => {
    server = serve({ fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) => resolve(info.port)) as http.Server;
  });
  answerMalformedRequests(server);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
