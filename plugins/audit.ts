import fp from 'fastify-plugin'
import type { ErrorCodeName } from '../schemas/errors.js'
import type { Queryable } from './store/index.js'

export type AuditAction = 'token.minted' | 'key.created' | 'key.revoked' | 'license.changed' | 'access.denied' |
  'webhook.created' | 'webhook.deleted' | 'webhook.disabled' | 'user-data.deleted' | 'content.rekeyed' | 'job.retried' | 'credits.granted' |
  'account.created' | 'account.password-changed' | 'account.deleted' | 'integration.connected' | 'integration.disconnected'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A route that checks credentials itself (sign-in, account routes): its denials are audited like those of `auth` routes. */
    auditDenials?: boolean
  }
}

export interface AuditEventInput {
  /** `user:<id>`, `admin`, `system` (the service itself, e.g. a job) or `anonymous`. */
  actor: string
  action: AuditAction
  /** What was acted on: `user:<id>`, `key:<id>`, or a route. */
  target: string
  /** `ok`, or the error code of a denial. */
  outcome: 'ok' | ErrorCodeName
  /** null for what the service did by itself (a job). */
  requestId: string | null
  /** Ids, plan names, features, modes; never content and never a key. */
  details?: Record<string, unknown> | null
}

export interface AuditEvent extends Omit<Required<AuditEventInput>, 'target' | 'requestId'> { id: string, at: string, target: string | null, requestId: string | null }

interface AuditRow { id: string, at: Date, actor: string, action: AuditAction, target: string | null, outcome: AuditEvent['outcome'], request_id: string | null, details: Record<string, unknown> | null }

export interface AuditFilter { actor?: string, action?: AuditAction, target?: string, before?: string, limit: number }

/** Codes that mean "you may not": each one is an access.denied row. */
export const DENIAL_CODES = new Set<ErrorCodeName>(['UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_ENTITLED', 'LICENSE_INACTIVE'])

/** Append-only audit trail (the table refuses UPDATE and DELETE). */
export function createAudit (db: Queryable) {
  return {
    async record (event: AuditEventInput): Promise<void> {
      await db.query(
        'INSERT INTO audit_events (actor, action, target, outcome, request_id, details) VALUES ($1, $2, $3, $4, $5, $6)',
        [event.actor, event.action, event.target, event.outcome, event.requestId, event.details ?? null])
    },

    /** Newest first; `before` is the cursor (an event id) of the next page. */
    async list (filter: AuditFilter): Promise<{ events: AuditEvent[], nextCursor: string | null }> {
      const where: string[] = []
      const params: unknown[] = []
      const add = (sql: string, value: unknown) => { params.push(value); where.push(sql.replace('?', `$${params.length}`)) }
      if (filter.actor !== undefined) add('actor = ?', filter.actor)
      if (filter.action !== undefined) add('action = ?', filter.action)
      if (filter.target !== undefined) add('target = ?', filter.target)
      if (filter.before !== undefined) add('id < ?', filter.before)
      params.push(filter.limit + 1)
      const { rows } = await db.query<AuditRow>(
        `SELECT * FROM audit_events ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${params.length}`, params)
      const page = rows.slice(0, filter.limit)
      return {
        events: page.map((row) => ({
          id: String(row.id),
          at: row.at.toISOString(),
          actor: row.actor,
          action: row.action,
          target: row.target,
          outcome: row.outcome,
          requestId: row.request_id,
          details: row.details
        })),
        nextCursor: rows.length > filter.limit ? String(page[page.length - 1]?.id) : null
      }
    }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    audit: ReturnType<typeof createAudit>
  }
}

/** The audit trail, and an access.denied row for every denied call to an authenticated route. */
export default fp(async function audit (app) {
  const trail = createAudit(app.store)
  app.decorate('audit', trail)

  // Written before the answer leaves, so a client that sees the denial can find its row.
  app.addHook('onSend', async (request) => {
    const code = request.errorCode
    const { auth, auditDenials } = request.routeOptions.config
    if (code === null || !DENIAL_CODES.has(code) || (auth === undefined && auditDenials !== true)) return
    const userId = request.principal?.userId ?? request.credential?.userId
    await trail.record({
      actor: userId === undefined ? 'anonymous' : `user:${userId}`,
      action: 'access.denied',
      target: `${request.method} ${String(request.routeOptions.url)}`,
      outcome: code,
      requestId: request.id
    }).catch((err: unknown) => request.log.error({ err }, 'could not write the audit row'))
  })
}, { name: 'audit', fastify: '5.x', dependencies: ['store', 'errors', 'auth'] })
