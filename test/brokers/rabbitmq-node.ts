// A RabbitMQ node of a test's own, for tests that stop the broker (docs/testing.md: a test
// that stops a server starts its own). It runs the machine's rabbitmq-server script directly
// (not the /usr/sbin wrapper, which switches to the rabbitmq user and its /var/lib files) on
// free ports, with a unique node name and its data, logs, plugins file, configuration and
// Erlang cookie (HOME) in a temporary directory, so the machine's node on 5672 is untouched.
// With RABBITMQ_ALLOW_INPUT the script execs erl, which execs beam.smp: the pid spawned is
// the broker's, and the test stops or kills exactly that pid. It registers with the running
// epmd and never starts one (-start_epmd false), so it leaves no daemon behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from 'amqplib';
import { freePort } from '../helpers/pg-admin.ts';
import { waitFor } from './helpers.ts';

export const RABBITMQ_SERVER = process.env.RABBITMQ_SERVER_BIN ?? '/usr/lib/rabbitmq/bin/rabbitmq-server';

export interface RabbitNode {
  readonly url: string;
  readonly nodeName: string;
  /** the broker's pid while it runs */
  readonly pid: number | null;
  /** starts it (again, on the same ports and data) and waits until it takes AMQP connections */
  start(): Promise<void>;
  /** sends the signal to its pid and waits for it to exit */
  signal(sig: 'SIGKILL' | 'SIGTERM'): Promise<void>;
  /** what the broker printed so far, all its starts */
  output(): string;
  /** kills it if it runs and removes its directory */
  close(): Promise<void>;
}

export async function ownRabbitNode(): Promise<RabbitNode> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ledger-rabbitmq-'));
  const port = await freePort();
  let distPort = await freePort();
  while (distPort === port) distPort = await freePort();
  const nodeName = `ledger-test-${randomUUID().slice(0, 8)}@localhost`;
  const url = `amqp://guest:guest@127.0.0.1:${port}`;
  // its own (empty) configuration: the machine's /etc/rabbitmq listens on 5672
  await writeFile(path.join(dir, 'rabbitmq.conf'), '');
  await writeFile(path.join(dir, 'enabled_plugins'), '');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir, // the Erlang cookie is made here, not in the user's ~/.erlang.cookie
    RABBITMQ_ALLOW_INPUT: '1',
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-noinput -start_epmd false -kernel inet_dist_use_interface {127,0,0,1}',
    RABBITMQ_NODENAME: nodeName,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
    RABBITMQ_CONF_ENV_FILE: path.join(dir, 'rabbitmq-env.conf'), // absent: not the machine's NODENAME
  };
  let child: ChildProcess | null = null;

  const answers = async () => {
    try {
      const c = await connect(url);
      await c.close();
      return true;
    } catch {
      return false;
    }
  };

  const node: RabbitNode = {
    url,
    nodeName,
    get pid() {
      return child?.exitCode === null && child.signalCode === null ? (child.pid ?? null) : null;
    },
    async start() {
      const out = openSync(path.join(dir, 'server.out'), 'a');
      const c = spawn(RABBITMQ_SERVER, [], { cwd: dir, env, stdio: ['ignore', out, out] });
      closeSync(out);
      child = c;
      let exited = false;
      c.once('exit', () => (exited = true));
      await waitFor(
        `rabbitmq-server ${nodeName} takes connections on ${port}`,
        async () => {
          if (exited) throw new Error(`rabbitmq-server exited while starting:\n${node.output().slice(-2000)}`);
          return answers();
        },
        120_000,
      );
    },
    async signal(sig) {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((resolve) => c.once('exit', resolve));
      process.kill(c.pid as number, sig);
      await exited;
    },
    output() {
      try {
        return readFileSync(path.join(dir, 'server.out'), 'utf8');
      } catch {
        return '';
      }
    },
    async close() {
      await node.signal('SIGKILL');
      child = null;
      await rm(dir, { recursive: true, force: true });
    },
  };
  return node;
}
