import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { AppError } from '../../../plugins/errors.js'
import { errorResponses } from '../../../schemas/errors.js'
import { TokenRequest, TokenResponse } from '../../../schemas/identity.js'
import type { Credential } from '../../../plugins/auth/index.js'
import { ref } from '../../../schemas/refs.js'

/** Exchange of a portal credential or an API key for a short-lived AI token. */
const tokens: FastifyPluginAsyncTypebox = async (app) => {
  app.post('/tokens', {
    config: { auth: 'credential' },
    // The body is optional: no body means every feature of the plan.
    preValidation: async (request) => { request.body ??= {} },
    schema: {
      operationId: 'createAiToken',
      summary: 'Mint an AI token',
      description: 'Exchanges a portal access token or an API key (`Authorization: Bearer …`) for an AI token, after checking ' +
        'the license. The token lasts AI_TOKEN_TTL_SECONDS (default 15 min) and carries the plan, the features and the mode ' +
        '(`test` for a `pak_test_` key). Limited per client address to slow down key guessing.',
      tags: ['tokens'],
      security: [{ portalToken: [] }, { apiKey: [] }, { accountPassword: [] }],
      body: ref(TokenRequest),
      response: {
        201: ref(TokenResponse),
        ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'LICENSE_INACTIVE', 'NOT_ENTITLED', 'RATE_LIMITED', 'PROVIDER_UNAVAILABLE')
      }
    }
  }, async (request, reply) => {
    const credential = request.credential as Credential
    const plan = await app.entitlements.activePlan(credential.userId, credential.claims?.plan)
    const planFeatures = app.entitlements.planFeatures(plan)
    const features = request.body.features ?? planFeatures
    const missing = features.filter((f) => !planFeatures.includes(f))
    if (missing.length > 0 || features.length === 0) {
      throw new AppError('NOT_ENTITLED', `The plan ${plan} does not include ${missing.length > 0 ? missing.join(', ') : 'any feature'}.`, { plan, features: missing })
    }
    const jti = randomUUID()
    const token = app.jwt.sign({ sub: credential.userId, plan, features, mode: credential.mode, jti })
    request.principal = { userId: credential.userId, plan, mode: credential.mode, credential: credential.kind, features, tokenId: jti, keyId: credential.keyId }
    await app.audit.record({
      actor: `user:${credential.userId}`,
      action: 'token.minted',
      target: `user:${credential.userId}`,
      outcome: 'ok',
      requestId: request.id,
      details: { tokenId: jti, plan, features, mode: credential.mode, credential: credential.kind, keyId: credential.keyId ?? null }
    })
    const ttl = app.config.AI_TOKEN_TTL_SECONDS
    return reply.code(201).header('cache-control', 'no-store').send({
      token,
      tokenType: 'Bearer' as const,
      expiresIn: ttl,
      expiresAt: new Date(app.jwt.decode<{ exp: number }>(token)?.exp as number * 1000).toISOString(),
      plan,
      features,
      mode: credential.mode
    })
  })
}

export default tokens
