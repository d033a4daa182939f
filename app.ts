import { createHash } from 'node:crypto'
import { AjvCompiler } from '@fastify/ajv-compiler'
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { Logger } from 'pino'
import configPlugin, { type Config } from './plugins/config.js'
import errors, { frameworkErrors, genReqId } from './plugins/errors.js'
import cookies from './plugins/external/cookie.js'
import cors from './plugins/external/cors.js'
import multipart from './plugins/external/multipart.js'
import images from './plugins/images.js'
import backgroundRemoval from './providers/background-removal.js'
import openapi from './plugins/external/openapi.js'
import health from './plugins/health.js'
import metrics from './plugins/metrics.js'
import type { Tracing } from './plugins/tracing.js'
import privacy from './plugins/privacy.js'
import schemas from './plugins/schemas.js'
import store, { type Store } from './plugins/store/index.js'
import contentCrypto from './plugins/content-crypto.js'
import jobs from './plugins/jobs.js'
import files from './plugins/files.js'
import userData from './plugins/user-data.js'
import auth from './plugins/auth/index.js'
import entitlements from './plugins/entitlements.js'
import audit from './plugins/audit.js'
import metering from './plugins/metering.js'
import rateLimit from './plugins/rate-limit.js'
import aiTokens from './plugins/external/jwt.js'
import settingsAssistant from './plugins/settings-assistant.js'
import openaiChat from './providers/openai-chat.js'
import models from './plugins/models.js'
import aiCalls from './plugins/ai-calls.js'
import chats from './plugins/chats.js'
import moderation from './plugins/moderation.js'
import chatRoutes from './routes/v1/chats/index.js'
import taskRoutes from './routes/v1/tasks/index.js'
import integrationRoutes from './routes/v1/integrations/index.js'
import sandboxChat from './providers/sandbox-chat.js'
import healthRoutes from './routes/health/index.js'
import aiRoutes from './routes/v1/ai/index.js'
import adminRoutes from './routes/v1/admin/index.js'
import openaiRoutes from './routes/v1/openai/index.js'
import webhookRoutes from './routes/v1/webhooks/index.js'
import webhooks from './plugins/webhooks.js'
import billing from './plugins/billing.js'
import stagingStyles from './plugins/staging-styles.js'
import stagings from './plugins/stagings.js'
import documents from './plugins/documents/index.js'
import scans from './plugins/scans.js'
import accounts from './plugins/accounts.js'
import tasks from './plugins/tasks.js'
import integrations from './plugins/integrations.js'
import authRoutes from './routes/v1/auth/index.js'
import billingRoutes from './routes/v1/billing/index.js'

/** JSON bodies are small (a chat message, a settings context); images come through multipart with their own limits. */
export const JSON_BODY_LIMIT = 256 * 1024

const AJV_OPTIONS = { allErrors: true, removeAdditional: false, useDefaults: true }

/**
 * Bodies are validated as sent (a number is not a string), while querystring, params and headers,
 * which are text on the wire, are coerced to the declared types.
 */
type ExternalSchemas = Parameters<ReturnType<typeof AjvCompiler>>[0]
type RouteDefinition = Parameters<ReturnType<ReturnType<typeof AjvCompiler>>>[0]

function buildValidator (externalSchemas: ExternalSchemas, serverOptions: { plugins: [] }) {
  const options = { plugins: serverOptions.plugins }
  const strict = AjvCompiler()(externalSchemas, { ...options, customOptions: { ...AJV_OPTIONS, coerceTypes: false } })
  const coercing = AjvCompiler()(externalSchemas, { ...options, customOptions: { ...AJV_OPTIONS, coerceTypes: 'array' } })
  return reusing('validator', externalSchemas, (route: RouteDefinition) => route.httpPart === 'body' ? strict(route) : coercing(route),
    (route) => [route.httpPart, route.schema])
}

const buildFastSerializer = SerializerSelector()
type SerializerRoute = Parameters<ReturnType<typeof buildFastSerializer>>[0] & { contentType?: string }

function buildSerializer (externalSchemas: unknown, serializerOptions: Parameters<typeof buildFastSerializer>[1]) {
  return reusing('serializer', [externalSchemas, serializerOptions ?? null], buildFastSerializer(externalSchemas, serializerOptions),
    (route: SerializerRoute) => [route.httpStatus, route.contentType ?? null, route.schema])
}

/**
 * Compiled validators and serializers, kept for the process: a second app built from the same schemas (another
 * instance in one process, every test) reuses them instead of compiling every route again, which is most of what
 * building the app costs. Keyed by content — the shared schemas and the route's own — never by object identity.
 */
const compiledSchemas = new Map<string, unknown>()
function reusing<Route, Compiled> (kind: string, shared: unknown, compile: (route: Route) => Compiled, key: (route: Route) => unknown[]) {
  const scope = createHash('sha256').update(JSON.stringify([kind, shared])).digest('base64')
  return (route: Route): Compiled => {
    const id = `${scope}\0${JSON.stringify(key(route))}`
    let compiled = compiledSchemas.get(id) as Compiled | undefined
    if (compiled === undefined) {
      compiled = compile(route)
      compiledSchemas.set(id, compiled)
    }
    return compiled
  }
}

/** Fastify's own options, shared by the server and the tests; the logger instance comes from the caller. */
export function fastifyOptions (config: Config, loggerInstance: Logger): FastifyServerOptions & { loggerInstance: Logger } {
  return {
    loggerInstance,
    // Fastify's own request lines carry the raw URL; the privacy plugin writes one line per request instead.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    requestIdHeader: false,
    genReqId,
    // Fastify accepts a hop count at run time; its types list only the other forms.
    trustProxy: trustProxy(config.TRUST_PROXY) as boolean | string,
    bodyLimit: JSON_BODY_LIMIT,
    frameworkErrors,
    schemaController: { compilersFactory: { buildValidator: buildValidator as never, buildSerializer: buildSerializer as never } },
    ajv: { customOptions: AJV_OPTIONS, plugins: [] }
  }
}

export function trustProxy (value: string): boolean | number | string {
  if (value === 'true') return true
  if (value === 'false') return false
  return /^[0-9]+$/.test(value) ? Number(value) : value
}

export interface AppOptions {
  config: Config
  /** A store made by the caller (the tests share one per file); otherwise the app opens its own. */
  store?: Store
  /** OpenTelemetry, when the process started it (server.ts): its request spans go in first. */
  tracing?: Tracing | null
}

/** The whole service as one plugin: third-party configuration, then our plugins, then routes. */
async function app (fastify: FastifyInstance, opts: AppOptions) {
  const server = fastify.withTypeProvider<TypeBoxTypeProvider>()
  // Before anything that defines a route or a hook, so that every request has its span.
  if (opts.tracing != null) await server.register(opts.tracing.fastifyPlugin)
  await server.register(configPlugin, { config: opts.config })
  await server.register(errors)
  await server.register(privacy)
  await server.register(health)
  await server.register(metrics)
  await server.register(schemas)
  // Hooks above are in place before any encapsulated third-party plugin (swagger-ui) registers routes.
  await server.register(openapi)
  await server.register(cors)
  await server.register(cookies)
  await server.register(multipart)
  await server.register(aiTokens)
  await server.register(store, { store: opts.store })
  await server.register(contentCrypto)
  await server.register(jobs)
  await server.register(userData)
  await server.register(files)
  // Rate limits before auth: the per-address limit of POST /v1/ai/tokens must count failed attempts too.
  await server.register(rateLimit)
  await server.register(auth)
  await server.register(entitlements)
  await server.register(audit)
  await server.register(metering)
  await server.register(billing)
  await server.register(webhooks)
  await server.register(settingsAssistant)
  await server.register(openaiChat)
  await server.register(models)
  await server.register(aiCalls)
  await server.register(chats)
  await server.register(moderation)
  await server.register(sandboxChat)
  await server.register(images)
  await server.register(backgroundRemoval)
  await server.register(stagingStyles)
  await server.register(stagings)
  await server.register(documents)
  await server.register(scans)
  await server.register(accounts)
  await server.register(tasks)
  await server.register(integrations)

  await server.register(healthRoutes, { prefix: '/health' })
  await server.register(authRoutes, { prefix: '/v1/auth' })
  await server.register(aiRoutes, { prefix: '/v1/ai' })
  await server.register(adminRoutes, { prefix: '/v1/admin' })
  await server.register(openaiRoutes, { prefix: '/v1/openai' })
  await server.register(webhookRoutes, { prefix: '/v1/webhooks' })
  await server.register(chatRoutes, { prefix: '/v1/chats' })
  await server.register(taskRoutes, { prefix: '/v1/tasks' })
  await server.register(integrationRoutes, { prefix: '/v1/integrations' })
  await server.register(billingRoutes, { prefix: '/v1/billing' })
}

const appPlugin = fp(app, { name: 'app', fastify: '5.x' })
export default appPlugin

/** A ready-to-register Fastify instance with the whole app; `extra` adds process options (https, timeouts). */
export async function buildApp (config: Config, loggerInstance: Logger, extra: Partial<FastifyServerOptions> = {}, store?: Store, tracing?: Tracing | null) {
  const fastify = Fastify({ ...fastifyOptions(config, loggerInstance), ...extra })
  await fastify.register(appPlugin, { config, store, tracing })
  return fastify
}
