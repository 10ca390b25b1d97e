import type { RegisterCommand } from '../cli.ts';
import type { ScheduleOptions } from '../schedules.ts';

const register: RegisterCommand = (program, { io, run }) => {
  const schedules = program.command('schedules').description('schedules with EventBridge Scheduler semantics: create, update, list, ticks, delete (docs/schedules.md)');
  /** schedules need their tables: migrate first, as start would */
  const withDb = async (fn: (url: string) => Promise<number>) => (await import('../context.ts')).withMigratedDatabase(io, (url) => fn(url));
  const definition = (cmd: ReturnType<typeof schedules.command>) =>
    cmd
      .argument('<name>', 'the schedule name (1–64 of A-Z a-z 0-9 . _ -)')
      .requiredOption('--expression <expr>', 'at(yyyy-mm-ddThh:mm:ss), rate(5 minutes) or cron(0 9 ? * MON-FRI *)')
      .requiredOption('--function <name[:version]>', 'the function to invoke (a version number after a colon; none: $LATEST)')
      .option('--input <json>', 'the event, with <aws.scheduler.scheduled-time> and the other context attributes replaced')
      .option('--timezone <zone>', 'IANA time zone of the expression (default UTC)')
      .option('--start <iso>', 'StartDate')
      .option('--end <iso>', 'EndDate')
      .option('--disabled', 'State DISABLED')
      .option('--flexible-window <minutes>', 'FlexibleTimeWindow FLEXIBLE with this MaximumWindowInMinutes (1–1440)')
      .option('--misfire <policy>', 'after downtime: skip, once (default) or all:<max catch-up>')
      .option('--retries <n>', 'RetryPolicy.MaximumRetryAttempts (0–185)')
      .option('--max-event-age <seconds>', 'RetryPolicy.MaximumEventAgeInSeconds (60–86400)')
      .option('--delete-after-completion', 'ActionAfterCompletion DELETE')
      .option('--group <group>', 'schedule group (default: default)')
      .option('--description <text>', 'a description')
      .option('--json', 'print JSON');
  definition(schedules.command('create').description('create a schedule')).action(
    run(async (name: string, o: ScheduleOptions) => {
      const { scheduleWriteCommand } = await import('../schedules.ts');
      return withDb((url) => scheduleWriteCommand(url, 'create', name, o, io));
    }),
  );
  definition(schedules.command('update').description('replace a schedule\'s definition (what is not given takes its default, as UpdateSchedule)')).action(
    run(async (name: string, o: ScheduleOptions) => {
      const { scheduleWriteCommand } = await import('../schedules.ts');
      return withDb((url) => scheduleWriteCommand(url, 'update', name, o, io));
    }),
  );
  schedules
    .command('list')
    .description('every schedule: name, state, expression, zone, target, next fire time')
    .option('--json', 'print JSON')
    .action(
      run(async (o: { json?: boolean }) => {
        const { listSchedulesCommand } = await import('../schedules.ts');
        return withDb((url) => listSchedulesCommand(url, o, io));
      }),
    );
  schedules
    .command('ticks')
    .description('the recorded ticks of a schedule (fired or skipped, why) and its next computed ones')
    .argument('<name>', 'the schedule name')
    .option('--group <group>', 'schedule group (default: default)')
    .option('--next <n>', 'how many upcoming ticks to compute', '5')
    .option('--json', 'print JSON')
    .action(
      run(async (name: string, o: { group?: string; next: string; json?: boolean }) => {
        const { scheduleTicksCommand } = await import('../schedules.ts');
        return withDb((url) => scheduleTicksCommand(url, name, o, io));
      }),
    );
  schedules
    .command('delete')
    .description('delete a schedule (its recorded ticks stay in the ledger)')
    .argument('<name>', 'the schedule name')
    .option('--group <group>', 'schedule group (default: default)')
    .action(
      run(async (name: string, o: { group?: string }) => {
        const { deleteScheduleCommand } = await import('../schedules.ts');
        return withDb((url) => deleteScheduleCommand(url, name, o, io));
      }),
    );
};
export default register;
