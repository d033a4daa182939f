import { createHmac } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { LoggerOptions } from 'pino'
import type { Principal } from '../schemas/principal.js'
import type { Config } from './config.js'

const REDACTED = '[REDACTED]'
/** Paths a careless `log.info({ ... })` could carry content or credentials under; the serializers keep them out first. */
const REDACT_PATHS = [
  'req.headers', 'request.headers', 'headers', '*.headers',
  'authorization', '*.authorization', 'cookie', '*.cookie', '["x-api-key"]', '*["x-api-key"]',
  'body', '*.body', 'query', '*.query', 'payload', '*.payload',
  'password', '*.password', 'token', '*.token', 'apiKey', '*.apiKey', 'secret', '*.secret'
]

/** Errors whose message is text we or the runtime wrote, never request content. */
function hasSafeMessage (err: Error & { code?: unknown }): boolean {
  if (err.name === 'AppError' || err.name === 'ConfigError') return true
  const code = typeof err.code === 'string' ? err.code : ''
  return (code.startsWith('FST_') && code !== 'FST_ERR_BAD_URL') || /^E[A-Z]+$/.test(code)
}

/** An error as a log line may show it: type, code, status and stack frames; its message only when safe. */
export function serializeError (err: Error & { code?: unknown, statusCode?: unknown, cause?: unknown }): Record<string, unknown> {
  const frames = (err.stack ?? '').split('\n').filter((line) => line.trimStart().startsWith('at ')).join('\n')
  const out: Record<string, unknown> = {
    type: err.name,
    message: hasSafeMessage(err) ? err.message : `${REDACTED} (${err.message.length} chars)`,
    stack: frames
  }
  if (err.code !== undefined) out.code = err.code
  if (err.statusCode !== undefined) out.statusCode = err.statusCode
  if (err.cause instanceof Error) out.cause = serializeError(err.cause)
  return out
}

/** pino options of the service: nothing of a body, query, credential or configured secret can reach a line. */
export function loggerOptions (config: Pick<Config, 'LOG_LEVEL' | 'secrets'>): LoggerOptions {
  const secrets = [...new Set(config.secrets)]
  return {
    level: config.LOG_LEVEL,
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    serializers: {
      req: (req: FastifyRequest) => ({ method: req.method, route: req.routeOptions?.url }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      err: serializeError
    },
    hooks: {
      // Last line of defence: a configured secret is cut out of the finished line, wherever it came from.
      streamWrite: (line: string) => secrets.reduce((out, s) => out.includes(s) ? out.replaceAll(s, REDACTED) : out, line)
    }
  }
}

/** Keyed hashes: correlate a user or a piece of content across log lines and providers without revealing it. */
export function createHasher (secret: string) {
  const keyed = (purpose: string) => createHmac('sha256', secret).update(purpose).digest()
  const userKey = keyed('portal-ai-api/user')
  const contentKey = keyed('portal-ai-api/content')
  return {
    /** The id a provider sees for a user: stable, not reversible without USER_HASH_SECRET. */
    user: (userId: string) => createHmac('sha256', userKey).update(userId).digest('hex'),
    /** 128-bit fingerprint of content for logs (same content, same fingerprint). */
    content: (data: string | Uint8Array) => createHmac('sha256', contentKey).update(data).digest('hex').slice(0, 32)
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    hash: ReturnType<typeof createHasher>
  }
  interface FastifyRequest {
    /** Who the request acts for; the auth plugin fills it. Logged by id only. */
    principal: Principal | null
  }
}

/** One request line (id, method, route pattern, status, duration, principal) and the hashing helpers. */
export default fp(async function privacy (app) {
  app.decorate('hash', createHasher(app.config.USER_HASH_SECRET))
  app.decorateRequest('principal', null)

  app.addHook('onResponse', async (request, reply) => {
    const line: Record<string, unknown> = {
      method: request.method,
      route: request.routeOptions.url ?? '(no route)',
      statusCode: reply.statusCode,
      durationMs: Math.round(reply.elapsedTime * 100) / 100
    }
    if (request.principal !== null) line.principalId = request.principal.userId
    if (request.errorCode !== null) line.errorCode = request.errorCode
    request.log.info(line, 'request completed')
  })
}, { name: 'privacy', fastify: '5.x', dependencies: ['config', 'errors'] })
