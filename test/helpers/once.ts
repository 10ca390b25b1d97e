// Slow tests (10,000 messages, chaos, the AWS CLI's workflow) run once per CI run: in the
// run against the machine's PostgreSQL (DATABASE_URL), not again in the embedded-PostgreSQL
// run, which adds nothing to what they test (.ci/run).
export const SLOW_TESTS = Boolean(process.env.DATABASE_URL || process.env.TEST_DATABASE_URL);
/** A slow test's title: where it is skipped, it says why (.ci/summary.mjs lets that skip pass). */
export const once = (title: string): string => (SLOW_TESTS ? title : `${title} (runs once: in the DATABASE_URL run)`);
