-- API keys: who may call the API, and with which scopes (invoke, admin, audit).
--
-- A key has two secrets, both shown once at creation:
--   * the bearer secret (Authorization: Bearer il_<id>_<secret>): only its SHA-256 is stored;
--   * the SigV4 secret (AWS_SECRET_ACCESS_KEY for the AWS SDK/CLI): SigV4 is an HMAC the
--     server must recompute, so this one is stored recoverably: AES-256-GCM under
--     LEDGER_SECRET_KEY when the server has one ('aes-256-gcm'), otherwise as is ('plain').
create table ledger.api_keys (
  id                  text primary key check (id ~ '^IL[A-Z2-7]{18}$'),
  name                text check (length(name) <= 200),
  scopes              text[] not null
                        check (cardinality(scopes) > 0 and scopes <@ array['invoke', 'admin', 'audit']::text[]),
  secret_sha256       bytea not null check (length(secret_sha256) = 32),
  sigv4_secret_format text not null check (sigv4_secret_format in ('plain', 'aes-256-gcm')),
  -- plain: the UTF-8 secret; aes-256-gcm: iv (12 bytes) || tag (16 bytes) || ciphertext, AAD = id
  sigv4_secret        bytea not null,
  created_at          timestamptz not null default now(),
  revoked_at          timestamptz
);

-- Keys are revoked, never deleted: the id stays meaningful in logs and `redriven` events.
grant select, insert, update (revoked_at) on ledger.api_keys to ledger_app;
