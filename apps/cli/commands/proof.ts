import type { RegisterCommand } from '../cli.ts';

const register: RegisterCommand = (program, { io, run }) => {
  program
    .command('proof')
    .description('an inclusion proof (of an invocation or an event position) or a consistency proof, as JSON (docs/tamper-evidence.md)')
    .option('--invocation <id>', "inclusion of an invocation's events")
    .option('--position <p>', 'inclusion of the event at this position')
    .option('--consistency <from>', 'consistency of the tree of size FROM with a later one')
    .option('--to <n>', 'the later tree size (with --consistency; default: the latest)')
    .option('--tree-size <n>', 'the tree size an inclusion proof is for (default: the latest)')
    .action(
      run(async (o: { invocation?: string; position?: string; consistency?: string; to?: string; treeSize?: string }) => {
        const { commandContext, withDatabase } = await import('../context.ts');
        const { proofCommand } = await import('../tamper.ts');
        const argv = Object.entries({ invocation: o.invocation, position: o.position, consistency: o.consistency, to: o.to, 'tree-size': o.treeSize }).flatMap(
          ([k, v]) => (v === undefined ? [] : [`--${k}`, v]),
        );
        return withDatabase(commandContext(io), (url) => proofCommand(url, argv, io.out, io.err));
      }),
    );
};
export default register;
