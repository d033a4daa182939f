import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type, { type Static } from 'typebox'
import { AuditAction, AuditPage } from '../../../schemas/admin.js'
import { errorResponses } from '../../../schemas/errors.js'
import { ref } from '../../../schemas/refs.js'

const DEFAULT_PAGE = 50
const MAX_PAGE = 200

const audit: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/audit', {
    config: { auth: 'admin' },
    schema: {
      operationId: 'listAuditEvents',
      summary: 'Audit events, newest first',
      description: 'Tokens minted, keys created and revoked, license changes and denied access. Filter by actor, action or target; ' +
        'page with `cursor` (the `nextCursor` of the previous page).',
      tags: ['admin'],
      security: [{ adminToken: [] }],
      querystring: Type.Object({
        actor: Type.Optional(Type.String({ minLength: 1, maxLength: 140, description: 'e.g. `user:user-42`, `admin`.' })),
        action: Type.Optional(Type.Unsafe<Static<typeof AuditAction>>(Type.Ref('AuditAction'))),
        target: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'e.g. `user:user-42`, `key:key_…`.' })),
        cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,18}$', description: 'From `nextCursor`.' })),
        limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE, default: DEFAULT_PAGE })
      }, { additionalProperties: false }),
      response: { 200: ref(AuditPage), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED') }
    }
  }, async (request) => {
    const { actor, action, target, cursor, limit } = request.query
    return app.audit.list({ actor, action, target, before: cursor, limit })
  })
}

export default audit
