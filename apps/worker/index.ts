// PLACEHOLDER until the async engine lands: the interface the CLI composes.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Db } from '../../db/schema.ts';
import type { Runtimes } from '../runtimes/index.ts';

export interface WorkerOptions {
  db: Db;
  /** for LISTEN; a dedicated connection outside the pool */
  databaseUrl: string;
  runtimes: Runtimes;
  logger: Logger;
  registry: Registry;
  workerId: string;
  concurrency: number;
  claimBatchSize: number;
  pollIntervalMs: number;
}

export interface Worker {
  start(): Promise<void>;
  /** stop claiming, release what has not started, wait for running attempts */
  stop(): Promise<void>;
}

export function createWorker(_options: WorkerOptions): Worker {
  return { start: async () => {}, stop: async () => {} };
}
