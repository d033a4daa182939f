import { createHmac, randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import fp from 'fastify-plugin'
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
  ENTITLEMENTS_SOURCE: oneOf(['db', 'claims'] as const, 'db', { 'x-group': 'Portal identity', description: '`db`: plans come from the licenses table; `claims`: from the `plan` claim of the portal token (API keys still use the licenses table).' }),
  PLANS_FILE: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Portal identity', description: 'JSON file of plans → features → quotas and rate limits. Unset: the bundled plans.' })),

  OPENAI_API_KEY: Type.Optional(Type.String({ minLength: 1, 'x-secret': true, 'x-group': 'Settings Assistant (OpenAI)', description: 'Key of the live chat provider.' })),
  OPENAI_BASE_URL: url({ default: 'https://api.openai.com/v1', 'x-group': 'Settings Assistant (OpenAI)', description: 'Any OpenAI-compatible endpoint.' }),
  OPENAI_MODEL: Type.String({ minLength: 1, default: 'gpt-4o-mini', 'x-group': 'Settings Assistant (OpenAI)', description: 'Chat model.' }),
  OPENAI_TIMEOUT_MS: ms(60_000, { 'x-group': 'Settings Assistant (OpenAI)', description: 'Whole-call timeout of a chat request, in ms (the first byte must come within 15000).' }),
  MODERATION: oneOf(['off', 'openai'] as const, 'off', { 'x-group': 'Settings Assistant (OpenAI)', description: '`openai`: pre-check messages with the OpenAI moderation endpoint.' }),
  SETTINGS_CATALOG_FILE: Type.Optional(Type.String({ minLength: 1, 'x-group': 'Settings Assistant (OpenAI)', description: 'JSON file of the settings the assistant may suggest. Unset: the bundled catalog.' })),

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
    description: 'Background removals under way at once on an instance (upload to result; each holds about two copies of its image). More wait with their upload unread, for at most BG_REMOVAL_TIMEOUT_MS (45 s at most), then get PROVIDER_UNAVAILABLE with Retry-After. Bounds memory: see docs/operations.md, Sizing.'
  })
}, { additionalProperties: false, title: 'Environment', description: 'Configuration of portal-ai-api, read from the environment.' })

type Env = Static<typeof ConfigSchema>
export type Config = Omit<Env, 'AI_TOKEN_SECRET' | 'USER_HASH_SECRET' | 'ADMIN_TOKEN'> & {
  AI_TOKEN_SECRET: string
  USER_HASH_SECRET: string
  ADMIN_TOKEN: string
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
  if ((env2.TLS_CERT_FILE === undefined) !== (env2.TLS_KEY_FILE === undefined)) {
    problems.push('TLS_CERT_FILE and TLS_KEY_FILE go together: set both to serve HTTPS, or neither.')
  }
  if (env2.DATABASE_URL !== undefined) {
    for (const name of ['AI_TOKEN_SECRET', 'USER_HASH_SECRET', 'ADMIN_TOKEN'] as const) {
      if (env2[name] === undefined && !failing.has(name)) {
        problems.push(`${name} is required with DATABASE_URL (every instance must share it), at least ${MIN_SECRET_LENGTH} characters.`)
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return env2
}

interface EmbeddedSecrets { aiTokenSecret: string, adminToken: string }

export const embeddedSecretsFile = (dataDir: string) => join(resolve(dataDir), EMBEDDED_SECRETS_FILE)

/** The secrets the embedded server wrote into DATA_DIR, or null when there are none (the CLI reads its admin token here). */
export function readEmbeddedSecrets (dataDir: string): EmbeddedSecrets | null {
  const file = embeddedSecretsFile(dataDir)
  try {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as Partial<EmbeddedSecrets>
    if (typeof saved.aiTokenSecret === 'string' && typeof saved.adminToken === 'string') {
      return { aiTokenSecret: saved.aiTokenSecret, adminToken: saved.adminToken }
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
  if (saved !== null) return saved
  const created = { aiTokenSecret: randomBytes(32).toString('base64url'), adminToken: randomBytes(32).toString('base64url') }
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
  const needsEmbedded = parsed.AI_TOKEN_SECRET === undefined || parsed.ADMIN_TOKEN === undefined
  const embedded = needsEmbedded ? embeddedSecrets(parsed.DATA_DIR) : undefined
  const aiTokenSecret = parsed.AI_TOKEN_SECRET ?? (embedded as EmbeddedSecrets).aiTokenSecret
  const config = {
    ...parsed,
    AI_TOKEN_SECRET: aiTokenSecret,
    ADMIN_TOKEN: parsed.ADMIN_TOKEN ?? (embedded as EmbeddedSecrets).adminToken,
    USER_HASH_SECRET: parsed.USER_HASH_SECRET ?? createHmac('sha256', aiTokenSecret).update('portal-ai-api/user-hash').digest('base64url'),
    secrets: [] as string[]
  }
  config.secrets = CONFIG_VARIABLES
    .filter((name) => properties[name]?.['x-secret'] === true)
    .map((name) => (config as Record<string, unknown>)[name])
    .filter((v): v is string => typeof v === 'string' && v.length >= 8)
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
