import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { errorResponses } from '../../../schemas/errors.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'
import { CreateWebhookRequest, UpdateWebhookRequest, Webhook, WebhookCreated, WebhookId, WebhookListQuery, WebhookPage, WebhookTestResult } from '../../../schemas/webhooks.js'

const common = { config: { auth: 'ai-token' as const }, tags: ['webhooks'], security: [{ aiToken: [] }] }
const byId = Type.Object({ id: WebhookId })
const userOf = (request: { principal: Principal | null }) => (request.principal as Principal).userId

/** /v1/webhooks: a user's endpoints for events of finished work (SPEC §11). */
const webhooks: FastifyPluginAsyncTypebox = async (app) => {
  app.post('', {
    config: common.config,
    schema: {
      operationId: 'createWebhook',
      summary: 'Add a webhook endpoint',
      description: 'Events are POSTed as JSON with the Standard Webhooks headers `webhook-id`, `webhook-timestamp` and ' +
        '`webhook-signature` (`v1,<base64 HMAC-SHA-256>` of `id.timestamp.body` under the secret). The secret is shown only ' +
        'in this answer. The url must be https:// on a public address; it is checked now and again at every delivery. ' +
        'Payloads carry ids, types and statuses, never content. At most 20 endpoints per user (CONFLICT beyond).',
      tags: common.tags,
      security: common.security,
      body: ref(CreateWebhookRequest),
      response: { 201: ref(WebhookCreated), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'CONFLICT', 'RATE_LIMITED') }
    }
  }, async (request, reply) => {
    const created = await app.webhooks.create(userOf(request), request.body)
    await app.audit.record({ actor: `user:${userOf(request)}`, action: 'webhook.created', target: `webhook:${created.id}`, outcome: 'ok', requestId: request.id, details: { events: created.events } })
    return reply.code(201).header('cache-control', 'no-store').header('location', `/v1/webhooks/${created.id}`).send(created)
  })

  app.get('', {
    config: common.config,
    schema: {
      operationId: 'listWebhooks',
      summary: 'List your webhook endpoints',
      description: 'Newest first, paged with `cursor` and `limit`. Secrets are never listed.',
      tags: common.tags,
      security: common.security,
      querystring: WebhookListQuery,
      response: { 200: ref(WebhookPage), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED') }
    }
  }, async (request) => app.webhooks.list(userOf(request), request.query))

  app.get('/:id', {
    config: common.config,
    schema: {
      operationId: 'getWebhook',
      summary: 'Read a webhook endpoint',
      description: 'Another user\'s webhook is NOT_FOUND.',
      tags: common.tags,
      security: common.security,
      params: byId,
      response: { 200: ref(Webhook), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'RATE_LIMITED') }
    }
  }, async (request) => app.webhooks.get(userOf(request), request.params.id))

  app.patch('/:id', {
    config: common.config,
    schema: {
      operationId: 'updateWebhook',
      summary: 'Change a webhook endpoint',
      description: 'Change its url, events or description, or turn it off and on (`enabled`). An endpoint that failed every ' +
        'delivery for 3 days was turned off (`disabledReason: failing`); `{"enabled": true}` turns it on again.',
      tags: common.tags,
      security: common.security,
      params: byId,
      body: ref(UpdateWebhookRequest),
      response: { 200: ref(Webhook), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'RATE_LIMITED') }
    }
  }, async (request) => app.webhooks.update(userOf(request), request.params.id, request.body))

  app.delete('/:id', {
    config: common.config,
    schema: {
      operationId: 'deleteWebhook',
      summary: 'Delete a webhook endpoint',
      description: 'No more deliveries go to it, including those waiting for a retry.',
      tags: common.tags,
      security: common.security,
      params: byId,
      response: { 204: { description: 'Deleted.', type: 'null' }, ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'RATE_LIMITED') }
    }
  }, async (request, reply) => {
    await app.webhooks.delete(userOf(request), request.params.id)
    await app.audit.record({ actor: `user:${userOf(request)}`, action: 'webhook.deleted', target: `webhook:${request.params.id}`, outcome: 'ok', requestId: request.id })
    return reply.code(204).send(null)
  })

  app.post('/:id/test', {
    config: common.config,
    schema: {
      operationId: 'testWebhook',
      summary: 'Send a ping to a webhook endpoint',
      description: 'Queues a signed `ping` event (`{"type": "ping", "timestamp": …, "data": {"webhookId": …}}`) to this endpoint, ' +
        'delivered and retried like any event. A disabled endpoint is CONFLICT.',
      tags: common.tags,
      security: common.security,
      params: byId,
      response: { 202: ref(WebhookTestResult), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'CONFLICT', 'RATE_LIMITED') }
    }
  }, async (request, reply) => reply.code(202).send(await app.webhooks.test(userOf(request), request.params.id)))
}

export default webhooks
