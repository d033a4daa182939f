import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { centsToMicro } from '../../../plugins/money.js'
import { UserId } from '../../../schemas/admin.js'
import { CreditAccount, CreditGrantInput } from '../../../schemas/billing.js'
import { errorResponses } from '../../../schemas/errors.js'
import { ref } from '../../../schemas/refs.js'

const params = Type.Object({ userId: UserId })
const query = Type.Object({ mode: Type.Optional(Type.Union([Type.Literal('live'), Type.Literal('test')], { description: 'live (when absent) or test.' })) }, { additionalProperties: false })

/** Purchased credits: an operator (or the shop, through this route) adds them; they never expire. */
const credits: FastifyPluginAsyncTypebox = async (app) => {
  async function account (userId: string, mode: 'live' | 'test', grantId?: string) {
    const license = await app.entitlements.getLicense(userId)
    const plan = license?.plan ?? null
    const balance = await app.billing.balance({ userId, mode, plan: plan ?? '' })
    return { userId, mode, plan, balance, ...(grantId === undefined ? {} : { grantId }) }
  }

  app.post('/credits/:userId', {
    config: { auth: 'admin' },
    schema: {
      operationId: 'grantCredits',
      summary: 'Add purchased credits to a user\'s balance',
      description: 'Adds `amountCents` (a positive whole number) to the live balance, or the test one with `mode: "test"`; audited as `credits.granted`. ' +
        'Purchased credits never expire and are spent after the month\'s free credits. The user need not have a billed plan yet.',
      tags: ['admin'],
      security: [{ adminToken: [] }],
      params,
      body: ref(CreditGrantInput),
      response: { 201: ref(CreditAccount), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED') }
    }
  }, async (request, reply) => {
    const { userId } = request.params
    const mode = request.body.mode ?? 'live'
    const grant = await app.metering.credits.grant(app.store, { userId, mode }, centsToMicro(request.body.amountCents), request.body.reason)
    await app.audit.record({
      actor: 'admin',
      action: 'credits.granted',
      target: `user:${userId}`,
      outcome: 'ok',
      requestId: request.id,
      details: { mode, amountCents: request.body.amountCents, grantId: `grant_${grant.id}` }
    })
    return reply.code(201).send(await account(userId, mode, `grant_${grant.id}`))
  })

  app.get('/credits/:userId', {
    config: { auth: 'admin' },
    schema: {
      operationId: 'getCredits',
      summary: 'A user\'s credit balance',
      description: 'The balance as the user reads it (GET /v1/billing/balance), for the live or the test `mode`, with the licensed plan. ' +
        'A user without a billed plan has billed: false.',
      tags: ['admin'],
      security: [{ adminToken: [] }],
      params,
      querystring: query,
      response: { 200: ref(CreditAccount), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED') }
    }
  }, async (request) => account(request.params.userId, request.query.mode ?? 'live'))
}

export default credits
