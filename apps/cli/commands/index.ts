// Every `invoke-ledger` command, in the order `--help` lists them. A new command is a file
// in this directory (see migrate.ts for the shape) and one line here.
import type { RegisterCommand } from '../cli.ts';
import archive from './archive.ts';
import auditRole from './audit-role.ts';
import brokers from './brokers.ts';
import deploy from './deploy.ts';
import init from './init.ts';
import keys from './keys.ts';
import logs from './logs.ts';
import migrate from './migrate.ts';
import proof from './proof.ts';
import rebuildProjections from './rebuild-projections.ts';
import schedules from './schedules.ts';
import replay from './replay.ts';
import retention from './retention.ts';
import seal from './seal.ts';
import sql from './sql.ts';
import start from './start.ts';
import streams from './streams.ts';
import treeHead from './tree-head.ts';
import verify from './verify.ts';

export const COMMANDS: RegisterCommand[] = [
  start,
  migrate,
  verify,
  rebuildProjections,
  keys,
  auditRole,
  sql,
  init,
  deploy,
  seal,
  treeHead,
  proof,
  logs,
  archive,
  retention,
  schedules,
  brokers,
  streams,
  replay,
];
