import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errorResponses } from '../../../schemas/errors.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'
import { DataDeleted, DataExport } from '../../../schemas/user-data.js'

/** A user's own data: the export (portability) and the deletion (SPEC §11). */
const me: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/me/data', {
    config: { auth: 'ai-token' },
    schema: {
      operationId: 'exportMyData',
      summary: 'Export everything kept about you',
      description: 'One JSON document with every section the service keeps for your user id (files, webhooks, and each ' +
        'feature\'s own), decrypted. Whatever mode the token is in, the export is of the user.',
      tags: ['data'],
      security: [{ aiToken: [] }],
      response: { 200: ref(DataExport), ...errorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED', 'STORAGE_UNAVAILABLE') }
    }
  }, async (request, reply) => {
    const { userId } = request.principal as Principal
    const sections = await app.userData.export(userId)
    return reply.header('cache-control', 'no-store').header('content-disposition', 'attachment; filename="portal-ai-data.json"')
      .send({ userId, exportedAt: new Date().toISOString(), sections })
  })

  app.delete('/me/data', {
    config: { auth: 'ai-token' },
    schema: {
      operationId: 'deleteMyData',
      summary: 'Delete everything kept about you',
      description: 'Deletes every section for real (stored files included) and revokes integrations. The usage ledger keeps its ' +
        'rows (billing records with no content). Your license and API keys are the portal\'s and stay.',
      tags: ['data'],
      security: [{ aiToken: [] }],
      response: { 200: ref(DataDeleted), ...errorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED', 'STORAGE_UNAVAILABLE') }
    }
  }, async (request) => {
    const { userId } = request.principal as Principal
    const deleted = await app.userData.delete(userId)
    await app.audit.record({ actor: `user:${userId}`, action: 'user-data.deleted', target: `user:${userId}`, outcome: 'ok', requestId: request.id, details: { deleted } })
    return { userId, deleted }
  })
}

export default me
