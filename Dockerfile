# syntax=docker/dockerfile:1
# invoke-ledger: API and worker in one image (LEDGER_ROLE picks), plus a PgBouncer target
# for docker-compose.yml. docs/scale.md explains the settings.
#
#   docker build -t invoke-ledger .
#   docker run --rm -e DATABASE_URL=postgres://… -p 3000:3000 -e HOST=0.0.0.0 invoke-ledger

# --- build: every dependency, then dist/ (plain JavaScript, so the server starts without compiling)
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts ./scripts
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY . .
RUN node scripts/build.mjs && node scripts/build.mjs --check

# --- production dependencies only (no vitest, eslint, AWS SDK, testcontainers …)
FROM node:22-bookworm-slim AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force

# --- runtime: non-root, tini as PID 1 forwarding SIGTERM, so `docker stop` drains and exits 0
FROM node:22-bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000 FUNCTIONS_DIR=/app/functions
COPY --from=prod-deps /app/node_modules ./node_modules
# sources next to dist/ (bin/ checks dist/ against them; same files, same times: no rebuild)
COPY --from=build /app/package.json ./
COPY --from=build /app/bin ./bin
COPY --from=build /app/scripts ./scripts
COPY --from=build /app/apps ./apps
COPY --from=build /app/db ./db
COPY --from=build /app/tools ./tools
COPY --from=build /app/migrations ./migrations
COPY --from=build /app/functions ./functions
COPY --from=build /app/dist ./dist
COPY docker/healthcheck.mjs ./docker/healthcheck.mjs
USER node
EXPOSE 3000
# the service's own drain timeout (SHUTDOWN_TIMEOUT_MS, default 30 s) must fit in `docker stop -t`
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s --retries=12 CMD ["node", "docker/healthcheck.mjs"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "bin/invoke-ledger.mjs"]
CMD ["start"]

# --- PgBouncer 1.18 (Debian's, the version the tests run) for docker-compose.yml
FROM debian:bookworm-slim AS pgbouncer
RUN apt-get update && apt-get install -y --no-install-recommends pgbouncer postgresql-client && rm -rf /var/lib/apt/lists/*
COPY docker/pgbouncer.ini /etc/pgbouncer/pgbouncer.ini
USER postgres
EXPOSE 6432
HEALTHCHECK --interval=2s --timeout=3s --retries=30 CMD ["pg_isready", "-h", "127.0.0.1", "-p", "6432"]
ENTRYPOINT ["/usr/sbin/pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]
