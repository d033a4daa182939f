import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { AppError } from '../../../plugins/errors.js'
import { License, LicenseInput, UserId } from '../../../schemas/admin.js'
import { errorResponses } from '../../../schemas/errors.js'
import { ref } from '../../../schemas/refs.js'

const params = Type.Object({ userId: UserId })

/** Licenses: the portal (or an operator with the CLI) pushes each user's plan and status here. */
const licenses: FastifyPluginAsyncTypebox = async (app) => {
  app.put('/licenses/:userId', {
    config: { auth: 'admin' },
    schema: {
      operationId: 'putLicense',
      summary: 'Create or replace a user\'s license',
      description: 'Sets the plan, status (default `active`) and end date. A suspended or expired license stops the minting ' +
        'of AI tokens at once; tokens already minted run out within their lifetime.',
      tags: ['admin'],
      security: [{ adminToken: [] }],
      params,
      body: ref(LicenseInput),
      response: { 200: ref(License), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED') }
    }
  }, async (request) => {
    const { userId } = request.params
    const before = await app.entitlements.getLicense(userId)
    const license = await app.entitlements.putLicense(userId, {
      plan: request.body.plan,
      status: request.body.status ?? 'active',
      validUntil: request.body.validUntil
    })
    await app.audit.record({
      actor: 'admin',
      action: 'license.changed',
      target: `user:${userId}`,
      outcome: 'ok',
      requestId: request.id,
      details: {
        plan: license.plan,
        status: license.status,
        validUntil: license.validUntil,
        previous: before === null ? null : { plan: before.plan, status: before.status, validUntil: before.validUntil }
      }
    })
    return license
  })

  app.get('/licenses/:userId', {
    config: { auth: 'admin' },
    schema: {
      operationId: 'getLicense',
      summary: 'Read a user\'s license',
      tags: ['admin'],
      security: [{ adminToken: [] }],
      params,
      response: { 200: ref(License), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'NOT_FOUND') }
    }
  }, async (request) => {
    const license = await app.entitlements.getLicense(request.params.userId)
    if (license === null) throw new AppError('NOT_FOUND', 'This user has no license.')
    return license
  })
}

export default licenses
