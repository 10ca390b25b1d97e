// THE table from LedgerError codes to HTTP: status, the AWS error type the Lambda SDK
// turns into an exception class (`x-amzn-ErrorType`), and extra headers/fields. The
// Lambda routes, the native routes and GraphQL all answer from it.
import { LedgerError, isDatabaseUnavailable, isTransientConflict, type LedgerErrorCode } from '../../db/errors.ts';

export interface HttpError {
  status: 400 | 401 | 403 | 404 | 409 | 412 | 413 | 429 | 500 | 503;
  /** the LedgerError code (native routes, GraphQL extensions) */
  code: LedgerErrorCode | 'InternalError';
  /** the AWS exception name (Lambda routes: `x-amzn-ErrorType`) */
  awsType: string;
  message: string;
  /** extra response headers (Retry-After) */
  headers: Record<string, string>;
  /** extra body fields of the Lambda error JSON (Reason) */
  fields: Record<string, unknown>;
}

type Row = [status: HttpError['status'], awsType: string];

const TABLE: Record<LedgerErrorCode, Row> = {
  FunctionNotFound: [404, 'ResourceNotFoundException'],
  InvocationNotFound: [404, 'ResourceNotFoundException'],
  QueueNotFound: [404, 'ResourceNotFoundException'],
  EventSourceMappingNotFound: [404, 'ResourceNotFoundException'],
  EventSourceMappingExists: [409, 'ResourceConflictException'],
  EventNotFound: [404, 'ResourceNotFoundException'],
  TreeHeadNotFound: [404, 'ResourceNotFoundException'],
  FunctionExists: [409, 'ResourceConflictException'],
  QueueExists: [409, 'ResourceConflictException'],
  LifecycleViolation: [409, 'ResourceConflictException'],
  SequenceConflict: [409, 'ResourceConflictException'],
  NotYetSealed: [409, 'ResourceConflictException'],
  InvalidFunctionConfig: [400, 'InvalidParameterValueException'],
  InvalidParameter: [400, 'InvalidParameterValueException'],
  InvalidRequestContent: [400, 'InvalidRequestContentException'],
  PayloadTooLarge: [413, 'RequestEntityTooLargeException'],
  TooManyRequests: [429, 'TooManyRequestsException'],
  SubscriberTooSlow: [429, 'TooManyRequestsException'],
  InvocationInProgress: [409, 'ResourceConflictException'],
  RecursiveInvocation: [400, 'RecursiveInvocationException'],
  Unauthorized: [401, 'UnrecognizedClientException'],
  Forbidden: [403, 'AccessDeniedException'],
  ServiceUnavailable: [503, 'ServiceException'],
  // code packages (docs/code.md): what Lambda answers for a bad ZipFile, a direct upload
  // over 50 MB and a full code store
  InvalidCodePackage: [400, 'InvalidParameterValueException'],
  CodePackageTooLarge: [413, 'RequestEntityTooLargeException'],
  CodeStorageExceeded: [400, 'CodeStorageExceededException'],
  CodePackageNotFound: [404, 'ResourceNotFoundException'],
  CodePackageCorrupt: [500, 'ServiceException'],
  // Lambda's answer to a stale RevisionId
  RevisionConflict: [412, 'PreconditionFailedException'],
  // EventBridge Scheduler's names (docs/schedules.md)
  ScheduleNotFound: [404, 'ResourceNotFoundException'],
  ScheduleExists: [409, 'ConflictException'],
  ReplayNotFound: [404, 'ResourceNotFoundException'],
  // Kinesis's names (docs/streams.md)
  StreamNotFound: [404, 'ResourceNotFoundException'],
  StreamExists: [409, 'ResourceInUseException'],
};

/** Any thrown value → what the client sees. Unknown errors are 500 without internals. */
export function httpErrorOf(e: unknown): HttpError {
  if (e instanceof LedgerError) {
    const [status, awsType] = TABLE[e.code] ?? [500, 'ServiceException'];
    const headers: Record<string, string> = {};
    const fields: Record<string, unknown> = {};
    if (e.code === 'TooManyRequests') {
      headers['Retry-After'] = String(e.details['retryAfterSeconds'] ?? 1);
      if (e.details['reason']) fields['Reason'] = e.details['reason'];
    }
    return { status, code: e.code, awsType, message: e.message, headers, fields };
  }
  if (isDatabaseUnavailable(e)) {
    return {
      status: 503,
      code: 'ServiceUnavailable',
      awsType: 'ServiceException',
      message: 'The service is unavailable: the ledger database cannot be reached. Nothing was accepted; retry later.',
      headers: { 'Retry-After': '1' },
      fields: {},
    };
  }
  if (isTransientConflict(e)) {
    return {
      status: 503,
      code: 'ServiceUnavailable',
      awsType: 'ServiceException',
      message: 'The request conflicted with a concurrent operation and was rolled back. Nothing was accepted; retry.',
      headers: { 'Retry-After': '1' },
      fields: {},
    };
  }
  return { status: 500, code: 'InternalError', awsType: 'ServiceException', message: 'Internal error', headers: {}, fields: {} };
}

/** AWS says "User" for client errors and "Service" for 5xx. */
export const errorSide = (status: number): 'User' | 'Service' => (status >= 500 ? 'Service' : 'User');
