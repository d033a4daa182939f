import { createHmac, randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import fp from 'fastify-plugin'
import { parseIdentityProviders, type IdentityProvider } from './auth/identity-providers.js'
import { generateKeyRing, parseKeyRing, type KeyRing } from './content-crypto.js'
import { DEFAULT_THRESHOLDS, parseThresholds } from './moderation.js'
import Type, { type Static, type TSchema } from 'typebox'
import Value from 'typebox/value'

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
const MIN_SECRET_LENGTH = 32
const HTTP_URL = '^https?://[^\\s]+$'
const EMBEDDED_SECRETS_FILE = 'secrets.json'

/** Extra keywords on a variable: `x-secret` values are never logged; `x-expected` says in words what a pattern wants. */
interface VarOptions { description: string, 'x-secret'?: boolean, 'x-expected'?: string, 'x-group': string }

const secret = (opts: VarOptions) =>
  Type.Optional(Type.String({ minLength: MIN_SECRET_LENGTH, 'x-secret': true, ...opts }))
const url = (opts: VarOptions & { default?: string }) =>
  Type.String({ pattern: HTTP_URL, 'x-expected': 'an http:// or https:// URL', ...opts })
const ms = (def: number, opts: VarOptions) =>
  Type.Integer({ minimum: 100, maximum: 600_000, default: def, ...opts })
const oneOf = <T extends string>(values: readonly T[], def: T, opts: VarOptions) =>
  Type.Union(values.map((v) => Type.Literal(v)), { default: def, ...opts })

/** Every environment variable of the service (SPEC §9). Names are part of the contract. */
export const ConfigSchema = Type.Object({
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000, 'x-group': 'Server', description: 'TCP port to listen on.' }),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1', 'x-group': 'Server', description: 'Address to listen on (the container sets 0.0.0.0).' }),
  LOG_LEVEL: oneOf(LOG_LEVELS, 'info', { 'x-group': 'Server', description: 'pino log level.' }),
  METRICS_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 9464, 'x-group': 'Server', description: 'Port of the internal Prometheus listener (GET /metrics), never the public port; 0 turns it off.' }),
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(url({ 'x-group': 'Server', description: 'OpenTelemetry collector (OTLP/HTTP, e.g. http://collector:4318): when set, traces are exported to it (`/v1/traces`). The other standard variables apply: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_SDK_DISABLED. Unset: no tracing, nothing of it loaded.' })),
  OTEL_SERVICE_NAME: Type.String({ minLength: 1, maxLength: 100, default: 'portal-ai-api', 'x-group': 'Server', description: 'The service name of the exported traces.' }),
  METRICS_HOST: Type.String({ minLength: 1, default: '127.0.0.1', 'x-group': 'Server', description: 'Address of the metrics listener: keep it off the public network (a private interface, or 0.0.0.0 inside a container whose port is not published).' }),
  TRUST_PROXY: Type.String({
    pattern: '^(true|false|[0-9]+|[0-9A-Fa-f.:/]+(,[0-9A-Fa-f.:/]+)*)$',
    default: 'false',
    'x-expected': 'true, false, a hop count, or comma-separated proxy addresses/CIDRs',
    'x-group': 'Server',
    description: 'Trust X-Forwarded-* headers from a proxy: true, false, a hop count, or the proxy addresses.'
  }),
  TLS_CERT_FILE: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Server', description: 'PEM certificate file: serve HTTPS directly (with TLS_KEY_FILE).' })),
  TLS_KEY_FILE: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Server', description: 'PEM private key file for TLS_CERT_FILE.' })),
  CORS_ORIGINS: Type.Optional(Type.String({
    pattern: '^https?://[^\\s,]+(,https?://[^\\s,]+)*$',
    'x-expected': 'comma-separated origins such as https://app.example.com',
    'x-group': 'Server',
    description: 'Comma-separated browser origins allowed by CORS. Unset: no cross-origin browser access.'
  })),

  DATA_DIR: Type.String({ minLength: 1, default: './data', 'x-group': 'Storage', description: 'Folder of the embedded database and of the generated secrets (used when DATABASE_URL is unset).' }),
  DATABASE_URL: Type.Optional(Type.String({
    pattern: '^postgres(ql)?://[^\\s]+$',
    'x-expected': 'a postgres:// or postgresql:// URL',
    'x-secret': true,
    'x-group': 'Storage',
    description: 'PostgreSQL connection URL; makes instances stateless. Requires AI_TOKEN_SECRET, USER_HASH_SECRET and ADMIN_TOKEN.'
  })),
  REDIS_URL: Type.Optional(Type.String({
    pattern: '^rediss?://[^\\s]+$',
    'x-expected': 'a redis:// or rediss:// URL',
    'x-secret': true,
    'x-group': 'Storage',
    description: 'Redis URL: shared rate-limit store for several instances.'
  })),

  AI_TOKEN_SECRET: secret({ 'x-group': 'Tokens and secrets', description: 'Signs AI tokens (at least 32 characters). Generated into DATA_DIR when embedded; required with DATABASE_URL.' }),
  AI_TOKEN_TTL_SECONDS: Type.Integer({ minimum: 60, maximum: 86_400, default: 900, 'x-group': 'Tokens and secrets', description: 'Lifetime of an AI token, in seconds.' }),
  USER_HASH_SECRET: secret({ 'x-group': 'Tokens and secrets', description: 'Key of the hash that identifies users to providers (at least 32 characters). Derived when embedded; required with DATABASE_URL.' }),
  ADMIN_TOKEN: secret({ 'x-group': 'Tokens and secrets', description: 'Bearer token of the admin API (at least 32 characters). Generated into DATA_DIR when embedded; required with DATABASE_URL.' }),

  PORTAL_JWKS_URL: Type.Optional(url({ 'x-group': 'Portal identity', description: 'JWKS of the portal: verify portal access tokens with RS256/ES256 keys. Set this or PORTAL_JWT_SECRET.' })),
  PORTAL_JWT_SECRET: secret({ 'x-group': 'Portal identity', description: 'HS256 secret of portal access tokens (at least 32 characters). Set this or PORTAL_JWKS_URL.' }),
  PORTAL_JWT_ISSUER: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Portal identity', description: 'Expected `iss` of portal access tokens.' })),
  PORTAL_JWT_AUDIENCE: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Portal identity', description: 'Expected `aud` of portal access tokens.' })),
  IDENTITY_PROVIDERS: Type.Optional(Type.String({
    minLength: 2,
    'x-secret': true,
    'x-expected': 'a JSON array of {issuer, audience, jwksUrl | secret, userIdClaim?, requiredClaims?}',
    'x-group': 'Portal identity',
    description: 'More trusted issuers of sign-in tokens besides the PORTAL_* one, e.g. a Supabase project: ' +
      '`[{"issuer":"https://<ref>.supabase.co/auth/v1","audience":"authenticated","jwksUrl":"https://<ref>.supabase.co/auth/v1/.well-known/jwks.json","requiredClaims":{"role":"authenticated"}}]`. ' +
      'A token goes to the provider of its `iss`; `userIdClaim` (default `sub`) is the user id; `secret` (HS256, at least 32 characters) instead of `jwksUrl` (RS256/ES256).'
  })),
  AUTH_COOKIE: Type.Optional(Type.String({
    pattern: '^[A-Za-z0-9_.-]{1,64}$',
    'x-expected': 'a cookie name of letters, digits, _ . or - (at most 64)',
    'x-group': 'Portal identity',
    description: 'Name of an HTTP-only cookie that may carry the sign-in token (browser front ends) where no Authorization header is sent. ' +
      'A state-changing request (POST, PUT, PATCH, DELETE) authenticated by it must also send the `X-Requested-With` header (CSRF). Unset: cookies are ignored.'
  })),
  ENTITLEMENTS_SOURCE: oneOf(['db', 'claims'] as const, 'db', { 'x-group': 'Portal identity', description: '`db`: plans come from the licenses table; `claims`: from the `plan` claim of the portal token (API keys still use the licenses table).' }),
  PLANS_FILE: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Portal identity', description: 'JSON file of plans → features → quotas and rate limits. Unset: the bundled plans.' })),

  OPENAI_API_KEY: Type.Optional(Type.String({ minLength: 1, 'x-secret': true, 'x-group': 'Settings Assistant (OpenAI)', description: 'Key of the live chat provider.' })),
  OPENAI_BASE_URL: url({ default: 'https://api.openai.com/v1', 'x-group': 'Settings Assistant (OpenAI)', description: 'Any OpenAI-compatible endpoint.' }),
  OPENAI_MODEL: Type.String({ minLength: 1, default: 'gpt-4o-mini', 'x-group': 'Settings Assistant (OpenAI)', description: 'OpenAI model of the Settings Assistant when SETTINGS_ASSISTANT_MODEL is unset.' }),
  SETTINGS_ASSISTANT_MODEL: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Settings Assistant (OpenAI)', description: 'A model id of the catalog (MODELS_FILE, e.g. claude-haiku-4-5) for the Settings Assistant, called on its vendor with that vendor\'s key; it must have the `tools` capability. Unset: OpenAI with OPENAI_MODEL.' })),
  OPENAI_TIMEOUT_MS: ms(60_000, { 'x-group': 'Settings Assistant (OpenAI)', description: 'Whole-call timeout of a chat request, in ms (the first byte must come within 15000).' }),
  MODERATION: oneOf(['off', 'openai'] as const, 'off', { 'x-group': 'Settings Assistant (OpenAI)', description: '`openai`: Settings Assistant messages are pre-checked, chat messages pre-checked and chat replies post-checked, with the OpenAI moderation endpoint (needs OPENAI_API_KEY; test mode uses the sandbox moderator).' }),
  MODERATION_THRESHOLDS: Type.String({
    pattern: '^\\s*([a-z][a-z/-]*:)?(high|medium|low)=(0(\\.[0-9]+)?|1(\\.0+)?)\\s*(,\\s*([a-z][a-z/-]*:)?(high|medium|low)=(0(\\.[0-9]+)?|1(\\.0+)?)\\s*)*$',
    default: DEFAULT_THRESHOLDS,
    'x-expected': 'comma-separated level=score entries (levels high, medium, low; scores 0 to 1), optionally per category as category:level=score',
    'x-group': 'Settings Assistant (OpenAI)',
    description: 'Chat moderation severities from the category scores: a score at or above `high` blocks (CONTENT_REJECTED), `medium` allows with a `warning`, `low` is logged by category. `self-harm:high=0.4` sets one category\'s level.'
  }),
  SETTINGS_CATALOG_FILE: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Settings Assistant (OpenAI)', description: 'JSON file of the settings the assistant may suggest. Unset: the bundled catalog.' })),

  MODELS_FILE: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Models and vendors', description: 'JSON file of the model catalog (id, vendor, upstream model, context and output limits, prices, premium). Unset: the bundled defaults/models.json.' })),
  ROUTING_FILE: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Models and vendors', description: 'JSON file of the routing matrix (plan × task class → model) and the fallback chains. Unset: the bundled defaults/routing.json.' })),
  STAGING_STYLES_FILE: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Virtual staging', description: 'JSON file of the staging style catalog (id, name, description, bestFor, priceRange, sortOrder, active, palette, prompt template). Unset: the bundled defaults/staging-styles.json.' })),
  STAGING_MODEL: Type.String({ minLength: 1, maxLength: 80, pattern: '^[A-Za-z0-9._:-]+$', default: 'gpt-image-1.5', 'x-group': 'Virtual staging', description: 'OpenAI image model of stagings (Images edit, with OPENAI_API_KEY and OPENAI_BASE_URL); priced by its `openai/<model>` entry of the plans file.' }),
  STAGING_VISION_MODEL: Type.String({ minLength: 1, maxLength: 80, pattern: '^[A-Za-z0-9._:-]+$', default: 'gpt-4o-mini', 'x-group': 'Virtual staging', description: 'OpenAI vision model that detects the room type and runs the premium integrity check (Chat Completions with structured output).' }),
  STAGING_TIMEOUT_MS: ms(300_000, { 'x-group': 'Virtual staging', description: 'Longest a staging job may run, all its provider calls included; then it fails with PROVIDER_TIMEOUT and its reservation is released.' }),
  STAGING_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 64, default: 2, 'x-group': 'Virtual staging', description: 'Staging jobs run at once on an instance (each holds its photo and the result, a few MB).' }),
  ANTHROPIC_API_KEY: Type.Optional(Type.String({ minLength: 1, 'x-secret': true, 'x-group': 'Models and vendors', description: 'Anthropic API key. Unset: its models are listed as not accessible.' })),
  ANTHROPIC_BASE_URL: url({ default: 'https://api.anthropic.com', 'x-group': 'Models and vendors', description: 'Anthropic Messages API endpoint (for a proxy).' }),
  QWEN_API_KEY: Type.Optional(Type.String({ minLength: 1, 'x-secret': true, 'x-group': 'Models and vendors', description: 'Qwen (Alibaba Cloud Model Studio) API key. Unset: its models are listed as not accessible.' })),
  QWEN_BASE_URL: url({ default: 'https://dashscope-intl.aliyuncs.com/compatible-mode/v1', 'x-group': 'Models and vendors', description: 'Qwen (Alibaba Cloud Model Studio) OpenAI-compatible endpoint (the international region by default; other regions have their own compatible-mode URL).' }),
  DEEPSEEK_API_KEY: Type.Optional(Type.String({ minLength: 1, 'x-secret': true, 'x-group': 'Models and vendors', description: 'DeepSeek API key. Unset: its models are listed as not accessible.' })),
  DEEPSEEK_BASE_URL: url({ default: 'https://api.deepseek.com/v1', 'x-group': 'Models and vendors', description: 'DeepSeek OpenAI-compatible endpoint.' }),
  XAI_API_KEY: Type.Optional(Type.String({ minLength: 1, 'x-secret': true, 'x-group': 'Models and vendors', description: 'xAI API key. Unset: its models are listed as not accessible.' })),
  XAI_BASE_URL: url({ default: 'https://api.x.ai/v1', 'x-group': 'Models and vendors', description: 'xAI OpenAI-compatible endpoint.' }),
  GEMINI_API_KEY: Type.Optional(Type.String({ minLength: 1, 'x-secret': true, 'x-group': 'Models and vendors', description: 'Google Gemini API key. Unset: its models are listed as not accessible.' })),
  GEMINI_BASE_URL: url({ default: 'https://generativelanguage.googleapis.com/v1beta/openai', 'x-group': 'Models and vendors', description: 'Google Gemini OpenAI-compatible endpoint of the Gemini API.' }),
  MODEL_TIMEOUT_MS: ms(60_000, { 'x-group': 'Models and vendors', description: 'Whole-call timeout of a chat call to a catalog vendor, in ms (the first byte, and every next one, within 15000). The Settings Assistant keeps OPENAI_TIMEOUT_MS.' }),
  BREAKER_FAILURES: Type.Integer({ minimum: 1, maximum: 100, default: 5, 'x-group': 'Models and vendors', description: 'Failures in a row (before the first byte) that take a vendor out for BREAKER_COOLDOWN_SECONDS.' }),
  BREAKER_COOLDOWN_SECONDS: Type.Integer({ minimum: 1, maximum: 3600, default: 30, 'x-group': 'Models and vendors', description: 'How long a failing vendor is skipped before one call tries it again; a vendor that refused the account (no credit, key refused) is skipped this long too.' }),

  CHAT_RETENTION_DAYS: Type.Integer({ minimum: 1, maximum: 3650, default: 365, 'x-group': 'Models and vendors', description: 'Chats without a new message for this many days are deleted by a daily job (messages, feedback and all).' }),

  BG_REMOVAL_PROVIDERS: Type.String({
    pattern: '^(removebg|rembg)(,(removebg|rembg))*$',
    default: 'removebg',
    'x-expected': 'a comma-separated list of removebg and rembg',
    'x-group': 'Background removal',
    description: 'Ordered fallback list of background-removal providers: `removebg`, `rembg`.'
  }),
  REMOVEBG_API_KEY: Type.Optional(Type.String({ minLength: 1, 'x-secret': true, 'x-group': 'Background removal', description: 'remove.bg API key.' })),
  REMOVEBG_BASE_URL: url({ default: 'https://api.remove.bg', 'x-group': 'Background removal', description: 'remove.bg endpoint (for a proxy).' }),
  REMBG_URL: Type.Optional(url({ 'x-group': 'Background removal', description: 'Self-hosted rembg server, e.g. http://rembg:7000.' })),
  BG_REMOVAL_TIMEOUT_MS: ms(30_000, { 'x-group': 'Background removal', description: 'Timeout of one background-removal attempt, in ms.' }),
  BG_REMOVAL_MAX_IN_FLIGHT: Type.Integer({
    minimum: 1,
    maximum: 256,
    default: 6,
    'x-group': 'Background removal',
    description: 'Background removals under way at once on an instance (from reading the upload until the result is sent; each holds about two copies of its image). More wait with their upload unread, for at most BG_REMOVAL_TIMEOUT_MS (45 s at most), then get PROVIDER_UNAVAILABLE with Retry-After. Bounds memory: see docs/operations.md, Sizing.'
  }),

  LOCAL_ACCOUNTS: oneOf(['on', 'off'] as const, 'off', { 'x-group': 'Built-in accounts', description: '`on`: the service is its own identity provider (POST /v1/auth/register, /login…), for deployments without a portal; its access tokens mint AI tokens like portal tokens. Off: /v1/auth/* answers NOT_FOUND.' }),
  LOCAL_ACCOUNTS_PLAN: Type.String({ pattern: '^[a-z][a-z0-9-]{0,39}$', default: 'free', 'x-group': 'Built-in accounts', description: 'The license plan a new account gets (a plan of the plans file).' }),
  LOCAL_ACCOUNTS_TOKEN_TTL_SECONDS: Type.Integer({ minimum: 60, maximum: 86_400, default: 3600, 'x-group': 'Built-in accounts', description: 'Lifetime of an account access token from POST /v1/auth/login, in seconds.' }),

  SCAN_PROVIDERS: Type.String({
    pattern: '^(aiservice|llm)(,(aiservice|llm))*$',
    default: 'aiservice,llm',
    'x-expected': 'a comma-separated list of aiservice and llm',
    'x-group': 'Risk scans',
    description: 'Ordered fallback list of risk-scan providers: `aiservice` (the risk AI service of AI_SERVICE_URL), `llm` (the built-in scanner on OpenAI, with OPENAI_API_KEY). A listed provider that is not set up is left out.'
  }),
  AI_SERVICE_URL: Type.Optional(url({ 'x-group': 'Risk scans', description: 'The risk AI service (`POST {url}/scan`), e.g. http://risk-ai:8000.' })),
  AI_SERVICE_TIMEOUT_MS: ms(60_000, { 'x-group': 'Risk scans', description: 'Timeout of one call to the risk AI service, in ms.' }),
  SCAN_MODEL: Type.String({ minLength: 1, maxLength: 80, pattern: '^[A-Za-z0-9._:-]+$', default: 'gpt-4o-mini', 'x-group': 'Risk scans', description: 'OpenAI model of the built-in LLM scanner (Chat Completions with structured output, OPENAI_BASE_URL); priced by its `openai/<model>` entry of the plans file.' }),
  SCAN_EXTRACT_TIMEOUT_MS: ms(20_000, { 'x-group': 'Risk scans', description: 'Longest the text of one uploaded document may take to extract (in a worker thread); then it is refused as too complex.' }),
  SCAN_EXTRACT_MEMORY_MB: Type.Integer({ minimum: 64, maximum: 4096, default: 256, 'x-group': 'Risk scans', description: 'Heap limit of a document-extraction worker thread, in MB; a document that needs more is refused as too complex.' }),
  SCAN_EXTRACT_THREADS: Type.Integer({ minimum: 1, maximum: 16, default: 1, 'x-group': 'Risk scans', description: 'Worker threads extracting document text at once on an instance; up to 8 documents per thread wait their turn, more get PROVIDER_UNAVAILABLE with Retry-After.' }),

  CONTENT_KEYS: Type.Optional(Type.String({
    minLength: 1,
    'x-secret': true,
    'x-expected': 'comma-separated id:base64key pairs, each key 32 bytes',
    'x-group': 'Content at rest',
    description: 'Key ring of the content stored encrypted (AES-256-GCM): `id:base64key,…`, the first one encrypts, the others still decrypt (rotation). Generated into DATA_DIR when embedded; required with DATABASE_URL. After adding a key in front, `portal-ai-api content rekey` re-encrypts to it.'
  })),

  JOB_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 64, default: 2, 'x-group': 'Jobs', description: 'Jobs of one queue run at once on an instance (every instance runs workers).' }),
  JOB_SUPERVISE_SECONDS: Type.Integer({
    minimum: 1,
    maximum: 3600,
    default: 30,
    'x-group': 'Jobs',
    description: 'How often an instance looks for jobs whose worker died (their expiry passed) and hands them back to the queue, in seconds.'
  }),
  JOBS_SCHEMA: Type.String({
    pattern: '^[a-z_][a-z0-9_]{0,62}$',
    default: 'pgboss',
    'x-expected': 'a lower-case PostgreSQL schema name',
    'x-group': 'Jobs',
    description: 'Database schema of the job queue (pg-boss) in the service\'s own database.'
  }),

  FILES_DIR: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Files', description: 'Folder of stored files (results, in-flight uploads) when S3_BUCKET is unset. Default DATA_DIR/files.' })),
  S3_BUCKET: Type.Optional(Type.String({
    pattern: '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$',
    'x-expected': 'an S3 bucket name',
    'x-group': 'Files',
    description: 'Keep files in this bucket of an S3-compatible store instead of FILES_DIR (needed for several instances). Credentials come from the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, …).'
  })),
  S3_ENDPOINT: Type.Optional(url({ 'x-group': 'Files', description: 'Endpoint of an S3-compatible store (MinIO, R2, …); unset for AWS S3.' })),
  S3_REGION: Type.String({ minLength: 1, default: 'us-east-1', 'x-group': 'Files', description: 'Region of the bucket.' }),
  S3_FORCE_PATH_STYLE: oneOf(['true', 'false'] as const, 'false', { 'x-group': 'Files', description: '`true`: bucket in the path (most self-hosted S3-compatible stores).' }),
  FILES_URL_SECRET: secret({ 'x-group': 'Files', description: 'Key of the HMAC of signed file links (at least 32 characters). Derived from AI_TOKEN_SECRET when unset.' }),
  FILES_URL_TTL_SECONDS: Type.Integer({ minimum: 60, maximum: 7 * 86_400, default: 3600, 'x-group': 'Files', description: 'Lifetime of a signed file link, in seconds.' }),
  FILE_RETENTION_DAYS: Type.Integer({ minimum: 1, maximum: 3650, default: 30, 'x-group': 'Files', description: 'Stored files older than this are deleted by a daily job.' }),

  GOOGLE_CLIENT_ID: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Google Calendar', description: 'OAuth client id of a Google Cloud "Web application" client. With GOOGLE_CLIENT_SECRET and GOOGLE_REDIRECT_URI: users may connect Google Calendar in live mode. Unset: connecting in live mode is PROVIDER_NOT_CONFIGURED (test mode uses the sandbox calendar).' })),
  GOOGLE_CLIENT_SECRET: Type.Optional(Type.String({ minLength: 1, 'x-secret': true, 'x-group': 'Google Calendar', description: 'Client secret of GOOGLE_CLIENT_ID.' })),
  GOOGLE_REDIRECT_URI: Type.Optional(url({ 'x-group': 'Google Calendar', description: 'This service\'s `/v1/integrations/google-calendar/callback` as the browser reaches it, registered as an authorized redirect URI of the client.' })),
  GOOGLE_OAUTH_BASE_URL: url({ default: 'https://oauth2.googleapis.com', 'x-group': 'Google Calendar', description: 'Google\'s token and revoke endpoints (`{base}/token`, `{base}/revoke`); an egress proxy\'s address where one is used.' }),
  GOOGLE_CALENDAR_BASE_URL: url({ default: 'https://www.googleapis.com', 'x-group': 'Google Calendar', description: 'Root of the Calendar API (`{base}/calendar/v3/…`); an egress proxy\'s address where one is used.' }),
  GOOGLE_TIMEOUT_MS: ms(10_000, { 'x-group': 'Google Calendar', description: 'Each call to Google (token, revoke, events) within this, in ms.' }),
  INTEGRATIONS_RETURN_URL: Type.Optional(url({ 'x-group': 'Google Calendar', description: 'Where the callback sends the browser when it is done, with `?integration=google-calendar&status=connected` or `&error=<reason>`. Unset: the callback answers JSON.' })),

  WEBHOOK_ALLOW_PRIVATE: oneOf(['true', 'false'] as const, 'false', { 'x-group': 'Webhooks', description: '`true`: webhooks may target http:// and private, loopback or link-local addresses (a closed network). Default: only https:// to public addresses.' })
}, { additionalProperties: false, title: 'Environment', description: 'Configuration of portal-ai-api, read from the environment.' })

type Env = Static<typeof ConfigSchema>
export type Config = Omit<Env, 'AI_TOKEN_SECRET' | 'USER_HASH_SECRET' | 'ADMIN_TOKEN' | 'CONTENT_KEYS' | 'FILES_URL_SECRET' | 'FILES_DIR'> & {
  AI_TOKEN_SECRET: string
  USER_HASH_SECRET: string
  ADMIN_TOKEN: string
  CONTENT_KEYS: string
  FILES_URL_SECRET: string
  FILES_DIR: string
  /** CONTENT_KEYS, parsed. */
  contentKeyRing: KeyRing
  /** IDENTITY_PROVIDERS, parsed (empty when unset). */
  identityProviders: IdentityProvider[]
  /** Values that must never appear in a log line. */
  secrets: string[]
}

export class ConfigError extends Error {
  readonly problems: string[]
  constructor (problems: string[]) {
    super(`Invalid configuration (${problems.length} ${problems.length === 1 ? 'problem' : 'problems'}):\n${problems.map((p) => `  - ${p}`).join('\n')}\nSee docs/env.md for every variable.`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

const properties = ConfigSchema.properties as unknown as Record<string, TSchema & Record<string, unknown>>
export const CONFIG_VARIABLES = Object.keys(properties)

/** A JSON file named by a variable (PLANS_FILE, SETTINGS_CATALOG_FILE), or the bundled default when it is unset. */
export function readJsonFile (variable: string, file: string | undefined, fallback: unknown): unknown {
  if (file === undefined) return fallback
  try {
    return JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new ConfigError([`${variable} cannot be read as JSON (${(err as NodeJS.ErrnoException).code ?? 'invalid JSON'}): ${file}`])
  }
}

/** What a variable accepts, in words, from its schema (values are never echoed: some are secrets). */
export function expectation (schema: Record<string, unknown>): string {
  if (Array.isArray(schema.anyOf)) {
    return `one of ${(schema.anyOf as Array<{ const: string }>).map((s) => s.const).join(', ')}`
  }
  if (schema.type === 'integer') return `a whole number from ${String(schema.minimum)} to ${String(schema.maximum)}`
  if (typeof schema['x-expected'] === 'string') return schema['x-expected']
  return `a text of at least ${String(schema.minLength)} characters`
}

/** Reads and checks the environment; throws a ConfigError that lists every problem at once. */
export function parseEnv (env: NodeJS.ProcessEnv): Env {
  const raw: Record<string, string> = {}
  for (const name of CONFIG_VARIABLES) {
    const value = env[name]
    // An empty variable (common in compose files) means unset.
    if (value !== undefined && value !== '') raw[name] = value
  }
  const value = Value.Convert(ConfigSchema, Value.Default(ConfigSchema, raw)) as Record<string, unknown>
  // Each variable is checked on its own: one report per variable, however many rules it breaks.
  const failing = new Set(CONFIG_VARIABLES.filter((name) =>
    value[name] !== undefined && !Value.Check(properties[name] as TSchema, value[name])))
  const problems = [...failing].map((name) => `${name} must be ${expectation(properties[name] as Record<string, unknown>)}.`)
  const env2 = value as Env
  if (env2.PORTAL_JWKS_URL !== undefined && env2.PORTAL_JWT_SECRET !== undefined) {
    problems.push('PORTAL_JWKS_URL and PORTAL_JWT_SECRET are both set: set only one way of verifying portal tokens.')
  }
  if (env2.IDENTITY_PROVIDERS !== undefined && !failing.has('IDENTITY_PROVIDERS')) {
    const providers = parseIdentityProviders(env2.IDENTITY_PROVIDERS, env2.PORTAL_JWT_ISSUER)
    if (typeof providers[0] === 'string') problems.push(...providers as string[])
  }
  const google = [env2.GOOGLE_CLIENT_ID, env2.GOOGLE_CLIENT_SECRET, env2.GOOGLE_REDIRECT_URI]
  if (google.some((v) => v !== undefined) && google.some((v) => v === undefined)) {
    problems.push('GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_REDIRECT_URI go together: set all three to connect Google Calendar, or none.')
  }
  if ((env2.TLS_CERT_FILE === undefined) !== (env2.TLS_KEY_FILE === undefined)) {
    problems.push('TLS_CERT_FILE and TLS_KEY_FILE go together: set both to serve HTTPS, or neither.')
  }
  if (!failing.has('MODERATION_THRESHOLDS')) {
    const thresholds = parseThresholds(env2.MODERATION_THRESHOLDS)
    if (Array.isArray(thresholds)) problems.push(...thresholds)
  }
  if (env2.MODERATION === 'openai' && env2.OPENAI_API_KEY === undefined) {
    problems.push('MODERATION=openai needs OPENAI_API_KEY (the moderation endpoint is OpenAI\'s): set the key, or MODERATION=off.')
  }
  if (env2.CONTENT_KEYS !== undefined && !failing.has('CONTENT_KEYS')) {
    const ring = parseKeyRing(env2.CONTENT_KEYS)
    if (Array.isArray(ring)) problems.push(...ring)
  }
  if (env2.DATABASE_URL !== undefined) {
    for (const name of ['AI_TOKEN_SECRET', 'USER_HASH_SECRET', 'ADMIN_TOKEN'] as const) {
      if (env2[name] === undefined && !failing.has(name)) {
        problems.push(`${name} is required with DATABASE_URL (every instance must share it), at least ${MIN_SECRET_LENGTH} characters.`)
      }
    }
    if (env2.CONTENT_KEYS === undefined) {
      problems.push('CONTENT_KEYS is required with DATABASE_URL (every instance must share it): id:base64key, e.g. k1:$(openssl rand -base64 32).')
    }
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return env2
}

interface EmbeddedSecrets { aiTokenSecret: string, adminToken: string, contentKeys: string }

export const embeddedSecretsFile = (dataDir: string) => join(resolve(dataDir), EMBEDDED_SECRETS_FILE)

/** The secrets the embedded server wrote into DATA_DIR, or null when there are none (the CLI reads its admin token here). */
export function readEmbeddedSecrets (dataDir: string): EmbeddedSecrets | null {
  const file = embeddedSecretsFile(dataDir)
  try {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as Partial<EmbeddedSecrets>
    if (typeof saved.aiTokenSecret === 'string' && typeof saved.adminToken === 'string') {
      // A data folder from before content encryption gets its key ring on the next start.
      return { aiTokenSecret: saved.aiTokenSecret, adminToken: saved.adminToken, contentKeys: typeof saved.contentKeys === 'string' ? saved.contentKeys : '' }
    }
    return null
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new ConfigError([`${file} cannot be read as JSON (${(err as NodeJS.ErrnoException).code ?? 'invalid JSON'}): fix or delete it.`])
  }
}

/**
 * The embedded default keeps its generated secrets in DATA_DIR (mode 600), so tokens and the admin token
 * survive restarts and the CLI on the same machine can read the admin token.
 */
export function embeddedSecrets (dataDir: string): EmbeddedSecrets {
  const file = embeddedSecretsFile(dataDir)
  const saved = readEmbeddedSecrets(dataDir)
  if (saved !== null && saved.contentKeys !== '') return saved
  const created = saved === null
    ? { aiTokenSecret: randomBytes(32).toString('base64url'), adminToken: randomBytes(32).toString('base64url'), contentKeys: generateKeyRing() }
    : { ...saved, contentKeys: generateKeyRing() }
  try {
    mkdirSync(resolve(dataDir), { recursive: true })
    writeFileSync(file, JSON.stringify(created, null, 2) + '\n', { mode: 0o600 })
    chmodSync(file, 0o600)
  } catch (err) {
    throw new ConfigError([`DATA_DIR cannot be written (${String((err as NodeJS.ErrnoException).code)}): ${resolve(dataDir)}. ` +
      'Point DATA_DIR at a writable folder, or set AI_TOKEN_SECRET and ADMIN_TOKEN.'])
  }
  return created
}

/** The full configuration: the environment checked, then the embedded secrets filled in where unset. */
export function loadConfig (env: NodeJS.ProcessEnv): Config {
  const parsed = parseEnv(env)
  const needsEmbedded = parsed.AI_TOKEN_SECRET === undefined || parsed.ADMIN_TOKEN === undefined || parsed.CONTENT_KEYS === undefined
  const embedded = needsEmbedded ? embeddedSecrets(parsed.DATA_DIR) : undefined
  const aiTokenSecret = parsed.AI_TOKEN_SECRET ?? (embedded as EmbeddedSecrets).aiTokenSecret
  const derive = (purpose: string) => createHmac('sha256', aiTokenSecret).update(`portal-ai-api/${purpose}`).digest('base64url')
  const contentKeys = parsed.CONTENT_KEYS ?? (embedded as EmbeddedSecrets).contentKeys
  const config = {
    ...parsed,
    AI_TOKEN_SECRET: aiTokenSecret,
    ADMIN_TOKEN: parsed.ADMIN_TOKEN ?? (embedded as EmbeddedSecrets).adminToken,
    USER_HASH_SECRET: parsed.USER_HASH_SECRET ?? derive('user-hash'),
    CONTENT_KEYS: contentKeys,
    FILES_URL_SECRET: parsed.FILES_URL_SECRET ?? derive('files-url'),
    FILES_DIR: parsed.FILES_DIR ?? join(parsed.DATA_DIR, 'files'),
    contentKeyRing: parseKeyRing(contentKeys) as KeyRing,
    identityProviders: parsed.IDENTITY_PROVIDERS === undefined ? [] : parseIdentityProviders(parsed.IDENTITY_PROVIDERS) as IdentityProvider[],
    secrets: [] as string[]
  }
  config.secrets = CONFIG_VARIABLES
    .filter((name) => properties[name]?.['x-secret'] === true)
    .map((name) => (config as Record<string, unknown>)[name])
    .filter((v): v is string => typeof v === 'string' && v.length >= 8)
    .concat([...config.contentKeyRing.keys.values()].map((key) => key.toString('base64')))
    .concat(config.identityProviders.flatMap((p) => p.secret === undefined ? [] : [p.secret]))
  return config
}

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

/** The validated configuration, loaded by the process before the app is built (the logger needs it first). */
export default fp<{ config: Config }>(async function config (app, opts) {
  app.decorate('config', opts.config)
}, { name: 'config', fastify: '5.x' })
