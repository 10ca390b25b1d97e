// A handler as a Lambda user writes it in TypeScript, typed with @types/aws-lambda.
import type { Context, Handler } from 'aws-lambda';

interface Greeting {
  name?: string;
}

export const handler: Handler<Greeting, Record<string, unknown>> = async (event, context: Context) => ({
  hello: event.name ?? 'world',
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  invokedFunctionArn: context.invokedFunctionArn,
  memoryLimitInMB: context.memoryLimitInMB,
  awsRequestId: context.awsRequestId,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  remaining: context.getRemainingTimeInMillis() > 0,
  callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
  env: {
    AWS_LAMBDA_FUNCTION_NAME: process.env['AWS_LAMBDA_FUNCTION_NAME'],
    AWS_LAMBDA_FUNCTION_VERSION: process.env['AWS_LAMBDA_FUNCTION_VERSION'],
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: process.env['AWS_LAMBDA_FUNCTION_MEMORY_SIZE'],
    AWS_REGION: process.env['AWS_REGION'],
    LAMBDA_TASK_ROOT: process.env['LAMBDA_TASK_ROOT'],
    _HANDLER: process.env['_HANDLER'],
    MODE: process.env['MODE'],
  },
  serverSecrets: ['DATABASE_URL', 'LEDGER_SECRET_KEY'].filter((k) => k in process.env),
});
