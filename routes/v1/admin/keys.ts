import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { AppError } from '../../../plugins/errors.js'
import { ApiKey, ApiKeyCreated, ApiKeyList, CreateKeyRequest, UserId } from '../../../schemas/admin.js'
import { errorResponses } from '../../../schemas/errors.js'
import { ref } from '../../../schemas/refs.js'

/** API keys for QA, partners and the embedded default; the key is shown once, at creation. */
const keys: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/keys', {
    config: { auth: 'admin' },
    schema: {
      operationId: 'createApiKey',
      summary: 'Create an API key',
      description: 'Returns the key once (only its SHA-256 is stored). A `test` key mints test-mode AI tokens: offline sandbox ' +
        'providers, metered apart. The user still needs an active license to mint tokens.',
      tags: ['admin'],
      security: [{ adminToken: [] }],
      body: ref(CreateKeyRequest),
      response: { 201: ref(ApiKeyCreated), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED') }
    }
  }, async (request, reply) => {
    const created = await app.apiKeys.create(request.body.userId, request.body.mode, request.body.name ?? null)
    await app.audit.record({
      actor: 'admin',
      action: 'key.created',
      target: `key:${created.id}`,
      outcome: 'ok',
      requestId: request.id,
      details: { userId: created.userId, mode: created.mode, prefix: created.prefix }
    })
    return reply.code(201).header('cache-control', 'no-store').send(created)
  })

  app.get('/keys', {
    config: { auth: 'admin' },
    schema: {
      operationId: 'listApiKeys',
      summary: 'List a user\'s API keys',
      description: 'Prefix, name, mode, creation, last use and revocation of each key; never the key.',
      tags: ['admin'],
      security: [{ adminToken: [] }],
      querystring: Type.Object({ userId: UserId }),
      response: { 200: ref(ApiKeyList), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED') }
    }
  }, async (request) => ({ keys: await app.apiKeys.list(request.query.userId) }))

  app.delete('/keys/:keyId', {
    config: { auth: 'admin' },
    schema: {
      operationId: 'revokeApiKey',
      summary: 'Revoke an API key',
      description: 'The key stops working at once. Revoking a revoked key changes nothing.',
      tags: ['admin'],
      security: [{ adminToken: [] }],
      params: Type.Object({ keyId: Type.String({ pattern: '^key_[0-9A-Za-z]{16}$', description: 'The key id (not the key).' }) }),
      response: { 200: ref(ApiKey), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'NOT_FOUND') }
    }
  }, async (request) => {
    const revoked = await app.apiKeys.revoke(request.params.keyId)
    if (revoked === null) throw new AppError('NOT_FOUND', 'No such API key.')
    await app.audit.record({
      actor: 'admin',
      action: 'key.revoked',
      target: `key:${revoked.id}`,
      outcome: 'ok',
      requestId: request.id,
      details: { userId: revoked.userId, mode: revoked.mode, prefix: revoked.prefix }
    })
    return revoked
  })
}

export default keys
