// Payload limits (Lambda's): what one invocation may carry, in bytes of JSON.
/** sync (RequestResponse) request and response payloads */
export const SYNC_PAYLOAD_LIMIT = 6_291_456;
/** async (Event) payloads, destination records included */
export const ASYNC_PAYLOAD_LIMIT = 1_048_576;
