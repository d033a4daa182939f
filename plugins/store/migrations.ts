/**
 * Versioned SQL migrations, one dialect for both backends (PGlite is PostgreSQL compiled to WASM).
 * Append only: a released migration is never edited; a change is a new entry with the next id.
 */
export interface Migration { id: number, name: string, sql: string }

export const MIGRATIONS: Migration[] = [
  {
    id: 1,
    name: 'identity-and-licensing',
    sql: `
CREATE TABLE licenses (
  user_id     text PRIMARY KEY,
  plan        text NOT NULL,
  status      text NOT NULL CHECK (status IN ('active', 'suspended', 'expired')),
  valid_until timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- An API key is stored only as its SHA-256; prefix is the first characters, enough to recognise it.
CREATE TABLE api_keys (
  id           text PRIMARY KEY,
  user_id      text NOT NULL,
  mode         text NOT NULL CHECK (mode IN ('live', 'test')),
  name         text,
  prefix       text NOT NULL,
  key_hash     text NOT NULL UNIQUE,
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at   timestamptz
);
CREATE INDEX api_keys_user_id ON api_keys (user_id, created_at);

-- Who did what to what, when; never content, never a key.
CREATE TABLE audit_events (
  id         bigserial PRIMARY KEY,
  at         timestamptz NOT NULL DEFAULT now(),
  actor      text NOT NULL,
  action     text NOT NULL,
  target     text,
  outcome    text NOT NULL,
  request_id text,
  details    jsonb
);
CREATE INDEX audit_events_actor ON audit_events (actor, id);
CREATE INDEX audit_events_action ON audit_events (action, id);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
`
  },
  {
    id: 2,
    name: 'metering',
    sql: `
-- One counter row per user, mode, feature and quota period: used (settled) and reserved (in flight).
CREATE TABLE quota_usage (
  user_id      text NOT NULL,
  mode         text NOT NULL CHECK (mode IN ('live', 'test')),
  feature      text NOT NULL,
  period_start timestamptz NOT NULL,
  used         bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
  reserved     bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  PRIMARY KEY (user_id, mode, feature, period_start)
);

-- A reservation taken before a provider call; settled or released after it, or expired by a sweep.
CREATE TABLE quota_reservations (
  id           text PRIMARY KEY,
  user_id      text NOT NULL,
  mode         text NOT NULL,
  feature      text NOT NULL,
  period_start timestamptz NOT NULL,
  units        bigint NOT NULL CHECK (units > 0),
  request_id   text,
  expires_at   timestamptz NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quota_reservations_expires_at ON quota_reservations (expires_at);

-- One row per settled call; never content.
CREATE TABLE usage_ledger (
  id             bigserial PRIMARY KEY,
  at             timestamptz NOT NULL DEFAULT now(),
  user_id        text NOT NULL,
  mode           text NOT NULL,
  feature        text NOT NULL,
  provider       text NOT NULL,
  model          text,
  units_in       bigint NOT NULL DEFAULT 0,
  units_out      bigint NOT NULL DEFAULT 0,
  units          bigint NOT NULL,
  cost_micro_usd bigint NOT NULL DEFAULT 0,
  request_id     text,
  estimated      boolean NOT NULL DEFAULT false
);
CREATE INDEX usage_ledger_user ON usage_ledger (user_id, mode, id);
`
  },
  {
    id: 3,
    name: 'idempotent-settlement',
    sql: `
-- The reservation a ledger row settles: a settlement retried after its first attempt did commit (the connection
-- died before the answer) finds its row and changes nothing.
ALTER TABLE usage_ledger ADD COLUMN reservation_id text;
CREATE UNIQUE INDEX usage_ledger_reservation ON usage_ledger (reservation_id);
`
  },
  {
    id: 4,
    name: 'files',
    sql: `
-- A stored file's record; its bytes are in FILES_DIR or the S3 bucket under storage_key.
CREATE TABLE files (
  id           text PRIMARY KEY,
  user_id      text NOT NULL,
  feature      text NOT NULL,
  kind         text NOT NULL CHECK (kind IN ('result', 'upload')),
  content_type text NOT NULL,
  size         bigint NOT NULL CHECK (size >= 0),
  sha256       text NOT NULL,
  storage_key  text NOT NULL UNIQUE,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_user ON files (user_id, created_at);
CREATE INDEX files_created_at ON files (created_at);
`
  },
  {
    id: 5,
    name: 'webhooks',
    sql: `
-- A user's webhook endpoint. Its url (which may carry a token), description and signing secret are stored only
-- encrypted (content crypto under key_id, each value bound to its row and column).
CREATE TABLE webhook_endpoints (
  id                 text PRIMARY KEY,
  user_id            text NOT NULL,
  events             text[] NOT NULL,
  enabled            boolean NOT NULL DEFAULT true,
  disabled_reason    text,
  key_id             text NOT NULL,
  url_sealed         bytea NOT NULL,
  description_sealed bytea,
  secret_sealed      bytea NOT NULL,
  failing_since   timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_user ON webhook_endpoints (user_id, created_at);

-- One row per event per endpoint: what was sent (ids and statuses only) and how it went.
CREATE TABLE webhook_deliveries (
  id              text PRIMARY KEY,
  endpoint_id     text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
  user_id         text NOT NULL,
  event_type      text NOT NULL,
  payload         jsonb NOT NULL,
  status          text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  last_status     integer,
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at);
`
  },
  {
    id: 6,
    name: 'chats',
    sql: `
-- Chat sessions (SPEC §15), per user and mode (test-mode chats never show to live tokens). The title and the
-- app's context reference are stored only encrypted (content crypto under key_id, bound to row and column).
CREATE TABLE chat_sessions (
  id                 text PRIMARY KEY,
  user_id            text NOT NULL,
  mode               text NOT NULL CHECK (mode IN ('live', 'test')),
  key_id             text NOT NULL,
  title_sealed       bytea,
  context_ref_sealed bytea,
  model              text,
  archived           boolean NOT NULL DEFAULT false,
  message_count      integer NOT NULL DEFAULT 0,
  created_at         timestamptz NOT NULL DEFAULT now(),
  last_activity_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_sessions_user ON chat_sessions (user_id, mode, last_activity_at DESC, id);
CREATE INDEX chat_sessions_activity ON chat_sessions (last_activity_at);

-- Messages: the text only encrypted; the figures of the call that wrote an assistant message in plain text.
CREATE TABLE chat_messages (
  id             text PRIMARY KEY,
  seq            bigserial NOT NULL,
  session_id     text NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
  user_id        text NOT NULL,
  role           text NOT NULL CHECK (role IN ('user', 'assistant')),
  key_id         text NOT NULL,
  content_sealed bytea NOT NULL,
  model          text,
  vendor         text,
  input_tokens   integer,
  output_tokens  integer,
  cost_micro_usd bigint,
  finish_reason  text,
  ttft_ms        integer,
  latency_ms     integer,
  estimated      boolean NOT NULL DEFAULT false,
  flagged        boolean NOT NULL DEFAULT false,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_messages_session ON chat_messages (session_id, seq);
CREATE INDEX chat_messages_created ON chat_messages (created_at, model);

-- One rating per assistant message (replaceable); the comment only encrypted.
CREATE TABLE chat_feedback (
  message_id     text PRIMARY KEY REFERENCES chat_messages (id) ON DELETE CASCADE,
  session_id     text NOT NULL,
  user_id        text NOT NULL,
  model          text,
  vendor         text,
  rating         smallint NOT NULL CHECK (rating IN (1, -1)),
  key_id         text,
  comment_sealed bytea,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_feedback_created ON chat_feedback (updated_at, model);

-- One row per call to a model vendor, for GET /v1/admin/analytics/ai: no user, no content, only what happened.
CREATE TABLE ai_calls (
  id             bigserial PRIMARY KEY,
  at             timestamptz NOT NULL DEFAULT now(),
  feature        text NOT NULL,
  mode           text NOT NULL,
  model          text NOT NULL,
  vendor         text NOT NULL,
  outcome        text NOT NULL CHECK (outcome IN ('completed', 'failed', 'client-aborted', 'shutdown', 'blocked')),
  error_code     text,
  input_tokens   bigint NOT NULL DEFAULT 0,
  output_tokens  bigint NOT NULL DEFAULT 0,
  cost_micro_usd bigint NOT NULL DEFAULT 0,
  ttft_ms        integer,
  latency_ms     integer
);
CREATE INDEX ai_calls_at ON ai_calls (at, mode);
`
  },
  {
    id: 7,
    name: 'credits',
    sql: `
-- Billing in money (plans with credits). Amounts are micro-USD. One account row per user and mode: the purchased
-- credits left (they never expire) and the part of them reserved by calls under way. Every change to a user's
-- credits locks this row first, so concurrent calls — on any instance — are serialised per user.
CREATE TABLE credit_accounts (
  user_id              text NOT NULL,
  mode                 text NOT NULL CHECK (mode IN ('live', 'test')),
  purchased_micro_usd  bigint NOT NULL DEFAULT 0 CHECK (purchased_micro_usd >= 0),
  reserved_micro_usd   bigint NOT NULL DEFAULT 0 CHECK (reserved_micro_usd >= 0),
  lifetime_micro_usd   bigint NOT NULL DEFAULT 0,
  updated_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, mode)
);

-- A UTC month of a user's credits: the free allowance used and reserved, everything charged and reserved (for the
-- monthly cost limit) and when that limit was first reached (its grace period starts then).
CREATE TABLE credit_months (
  user_id                text NOT NULL,
  mode                   text NOT NULL,
  month_start            timestamptz NOT NULL,
  free_used_micro_usd    bigint NOT NULL DEFAULT 0 CHECK (free_used_micro_usd >= 0),
  free_reserved_micro_usd bigint NOT NULL DEFAULT 0 CHECK (free_reserved_micro_usd >= 0),
  charged_micro_usd      bigint NOT NULL DEFAULT 0,
  reserved_micro_usd     bigint NOT NULL DEFAULT 0 CHECK (reserved_micro_usd >= 0),
  limit_reached_at       timestamptz,
  PRIMARY KEY (user_id, mode, month_start)
);

-- Tokens of a UTC day over the token-priced features, for the daily token limit.
CREATE TABLE credit_days (
  user_id         text NOT NULL,
  mode            text NOT NULL,
  day_start       timestamptz NOT NULL,
  tokens_used     bigint NOT NULL DEFAULT 0,
  tokens_reserved bigint NOT NULL DEFAULT 0 CHECK (tokens_reserved >= 0),
  PRIMARY KEY (user_id, mode, day_start)
);

-- The money a call under way holds; its id is the quota reservation's. Expired ones are given back by the sweep.
CREATE TABLE credit_reservations (
  id                  text PRIMARY KEY,
  user_id             text NOT NULL,
  mode                text NOT NULL,
  month_start         timestamptz NOT NULL,
  day_start           timestamptz NOT NULL,
  from_free_micro_usd bigint NOT NULL,
  from_purchased_micro_usd bigint NOT NULL,
  tokens              bigint NOT NULL,
  expires_at          timestamptz NOT NULL
);
CREATE INDEX credit_reservations_expires_at ON credit_reservations (expires_at);

-- Credits added by an operator (a purchase, a goodwill credit): positive amounts only, audited.
CREATE TABLE credit_grants (
  id          bigserial PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  user_id     text NOT NULL,
  mode        text NOT NULL,
  amount_micro_usd bigint NOT NULL CHECK (amount_micro_usd > 0),
  reason      text NOT NULL
);
CREATE INDEX credit_grants_user ON credit_grants (user_id, mode, at);

-- What a billed call was charged, and the prices it was charged at (a later price change never rewrites history);
-- the chat it belongs to, if any.
ALTER TABLE usage_ledger ADD COLUMN charged_micro_usd bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_ledger ADD COLUMN billed boolean NOT NULL DEFAULT false;
ALTER TABLE usage_ledger ADD COLUMN markup_percent integer;
ALTER TABLE usage_ledger ADD COLUMN price_in_micro_usd_per_1m bigint;
ALTER TABLE usage_ledger ADD COLUMN price_out_micro_usd_per_1m bigint;
ALTER TABLE usage_ledger ADD COLUMN price_per_call_micro_usd bigint;
ALTER TABLE usage_ledger ADD COLUMN session_id text;
CREATE INDEX usage_ledger_user_at ON usage_ledger (user_id, mode, at);
`
  },
  {
    id: 8,
    name: 'stagings',
    sql: `
-- Virtual staging (SPEC §12). A batch groups up to ten stagings of one submit.
CREATE TABLE staging_batches (
  id               text PRIMARY KEY,
  user_id          text NOT NULL,
  mode             text NOT NULL CHECK (mode IN ('live', 'test')),
  total            integer NOT NULL CHECK (total BETWEEN 1 AND 10),
  style            text NOT NULL,
  -- A hash of the client's Idempotency-Key and a keyed fingerprint of what was sent with it (never the content).
  idempotency_key  text,
  fingerprint      text,
  estimated_completion_at timestamptz NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  completed_at     timestamptz
);
CREATE UNIQUE INDEX staging_batches_idempotency ON staging_batches (user_id, mode, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- One staging: its options, its job's state and progress, its files and what it cost. The property name is the
-- user's text: sealed (AES-256-GCM) under key_id. The reservation (ids and amounts) is settled or released by the job.
CREATE TABLE stagings (
  id                   text PRIMARY KEY,
  user_id              text NOT NULL,
  mode                 text NOT NULL CHECK (mode IN ('live', 'test')),
  batch_id             text REFERENCES staging_batches (id) ON DELETE SET NULL,
  status               text NOT NULL CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
  progress             real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
  style                text NOT NULL,
  room_type            text,
  room_type_detected   boolean NOT NULL DEFAULT false,
  quality_mode         text NOT NULL CHECK (quality_mode IN ('standard', 'premium')),
  key_id               text,
  property_name_sealed bytea,
  upload_file_id       text,
  upload_type          text NOT NULL,
  upload_width         integer NOT NULL,
  upload_height        integer NOT NULL,
  result_file_id       text,
  result_width         integer,
  result_height        integer,
  quality_score        real,
  architectural_integrity boolean,
  error_code           text,
  idempotency_key      text,
  fingerprint          text,
  request_id           text,
  reservation          jsonb NOT NULL,
  provider_started_at  timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  started_at           timestamptz,
  completed_at         timestamptz
);
CREATE UNIQUE INDEX stagings_idempotency ON stagings (user_id, mode, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX stagings_user_created ON stagings (user_id, mode, created_at DESC, id DESC);
CREATE INDEX stagings_batch ON stagings (batch_id) WHERE batch_id IS NOT NULL;
`
  },
  {
    id: 9,
    name: 'risk-scans',
    sql: `
-- Document risk scans (SPEC §13): the risk list and the file name are the user's content, sealed (AES-256-GCM) under
-- key_id. The document and its text are never stored.
CREATE TABLE risk_scans (
  id              text PRIMARY KEY,
  user_id         text NOT NULL,
  mode            text NOT NULL CHECK (mode IN ('live', 'test')),
  key_id          text NOT NULL,
  data_sealed     bytea NOT NULL,
  filename_sealed bytea,
  source          text NOT NULL CHECK (source IN ('llm', 'model')),
  provider        text NOT NULL,
  risks           integer NOT NULL,
  request_id      text,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX risk_scans_user_created ON risk_scans (user_id, mode, created_at DESC, id DESC);
`
  },
  {
    id: 10,
    name: 'accounts',
    sql: `
-- Built-in accounts (SPEC §14). The email is found by a keyed hash and kept sealed (AES-256-GCM) under key_id; the
-- password as an argon2id hash. token_version goes up with each password change: older tokens stop working.
CREATE TABLE accounts (
  id            text PRIMARY KEY,
  email_hash    text NOT NULL UNIQUE,
  key_id        text NOT NULL,
  email_sealed  bytea NOT NULL,
  password_hash text NOT NULL,
  token_version integer NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL DEFAULT now()
);

-- Failed sign-ins per account (keyed hash of the email) and per client address (keyed hash), in a sliding window.
CREATE TABLE auth_attempts (
  key          text PRIMARY KEY,
  failures     integer NOT NULL,
  window_start timestamptz NOT NULL
);
`
  },
  {
    id: 11,
    name: 'tasks',
    sql: `
-- Tasks of the productivity assistant (SPEC §17): the title sealed (AES-256-GCM) under key_id; status and the due day
-- in the clear, for the list's filters.
CREATE TABLE tasks (
  id           text PRIMARY KEY,
  user_id      text NOT NULL,
  key_id       text NOT NULL,
  title_sealed bytea NOT NULL,
  status       text NOT NULL CHECK (status IN ('todo', 'doing', 'done')),
  due_date     date,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_user_created ON tasks (user_id, created_at DESC, id DESC);
`
  },
  {
    id: 12,
    name: 'integrations',
    sql: `
-- Google Calendar connections (SPEC §17): one per user and mode. The refresh and access tokens are sealed
-- (AES-256-GCM) under key_id; a test-mode (sandbox) connection has none.
CREATE TABLE integrations (
  id                text PRIMARY KEY,
  user_id           text NOT NULL,
  mode              text NOT NULL CHECK (mode IN ('live', 'test')),
  kind              text NOT NULL CHECK (kind IN ('google-calendar')),
  status            text NOT NULL CHECK (status IN ('ok', 'needs-reconnect')),
  scopes            text[] NOT NULL,
  key_id            text NOT NULL,
  refresh_sealed    bytea,
  access_sealed     bytea,
  access_expires_at timestamptz,
  connected_at      timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (user_id, kind, mode)
);

-- Connects under way: the state only as its SHA-256, single use (deleted when the callback comes), with the PKCE
-- verifier sealed; expired ones are deleted by the next connect.
CREATE TABLE oauth_states (
  state_hash      text PRIMARY KEY,
  user_id         text NOT NULL,
  mode            text NOT NULL CHECK (mode IN ('live', 'test')),
  kind            text NOT NULL,
  key_id          text NOT NULL,
  verifier_sealed bytea,
  expires_at      timestamptz NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX oauth_states_expires ON oauth_states (expires_at);
`
  },
  {
    id: 13,
    name: 'chat-tools',
    sql: `
-- Assistant tools of a chat (SPEC §17): which ones the model may call. Names only, no content.
ALTER TABLE chat_sessions ADD COLUMN tools text[] NOT NULL DEFAULT '{}';
`
  }
]
