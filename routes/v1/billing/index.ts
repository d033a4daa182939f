import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { Balance, BillingLimits, BillingUsage, BillingUsageQuery, Transaction, TransactionId, TransactionPage, TransactionQuery } from '../../../schemas/billing.js'
import { errorResponses } from '../../../schemas/errors.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'

const common = { config: { auth: 'ai-token' as const }, tags: ['billing'], security: [{ aiToken: [] }] }
const errors = errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED')

/** /v1/billing: the caller's credits (SPEC §16), read with the AI token; test-mode tokens read the test balance. */
const billing: FastifyPluginAsyncTypebox = async (app) => {
  const who = (principal: Principal) => ({ userId: principal.userId, mode: principal.mode, plan: principal.plan })

  app.get('/balance', {
    config: common.config,
    schema: {
      operationId: 'getBalance',
      summary: 'Your credit balance',
      description: 'Free credits left this month and purchased credits, less what calls under way hold; when the free credits renew; everything charged so far.',
      tags: common.tags,
      security: common.security,
      response: { 200: ref(Balance), ...errors }
    }
  }, async (request) => app.billing.balance(who(request.principal as Principal)))

  app.get('/usage', {
    config: common.config,
    schema: {
      operationId: 'getBillingUsage',
      summary: 'What you were charged this day, week or month',
      description: 'By feature and model over the current UTC `period` (`day`, `week` from Monday, or `month`, the default).',
      tags: common.tags,
      security: common.security,
      querystring: BillingUsageQuery,
      response: { 200: ref(BillingUsage), ...errors }
    }
  }, async (request) => app.billing.usage(who(request.principal as Principal), request.query.period ?? 'month'))

  app.get('/transactions', {
    config: common.config,
    schema: {
      operationId: 'listTransactions',
      summary: 'Charged calls and credits added',
      description: 'Newest first, paged with `cursor` and `limit`. Each charged call has the prices and markup it was charged at.',
      tags: common.tags,
      security: common.security,
      querystring: TransactionQuery,
      response: { 200: ref(TransactionPage), ...errors }
    }
  }, async (request) => app.billing.transactions(request.principal as Principal, request.query))

  app.get('/transactions/:id', {
    config: common.config,
    schema: {
      operationId: 'getTransaction',
      summary: 'One transaction',
      tags: common.tags,
      security: common.security,
      params: Type.Object({ id: TransactionId }),
      response: { 200: ref(Transaction), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'RATE_LIMITED') }
    }
  }, async (request) => app.billing.transaction(request.principal as Principal, request.params.id))

  app.get('/limits', {
    config: common.config,
    schema: {
      operationId: 'getBillingLimits',
      summary: 'Your plan\'s credit terms and where you stand',
      description: 'Markup, free credits, the daily token limit (hard) and the monthly cost limit (soft, with its grace period), with today\'s tokens and this month\'s charges.',
      tags: common.tags,
      security: common.security,
      response: { 200: ref(BillingLimits), ...errors }
    }
  }, async (request) => app.billing.limits(who(request.principal as Principal)))
}

export default billing
