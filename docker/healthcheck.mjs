// The image's HEALTHCHECK: GET /healthz on this container's PORT (open without a key).
// Plain Node, no curl in the slim image. Exit 0 when the service answers 200.
const port = process.env.PORT || '3000';
try {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2_500) });
  process.exit(res.ok ? 0 : 1);
} catch {
  process.exit(1);
}
