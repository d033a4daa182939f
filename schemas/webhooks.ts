import Type, { type Static } from 'typebox'
import { isoTime, ref } from './refs.js'
import { Page, PageQuery } from './pagination.js'

/** Every event a webhook may subscribe to; the list is part of the contract (features add theirs here). */
export const WEBHOOK_EVENTS = ['staging.completed', 'staging.failed', 'batch.completed', 'scan.completed', 'ping'] as const
export type WebhookEventType = typeof WEBHOOK_EVENTS[number]

export const WebhookEvent = Type.Union(WEBHOOK_EVENTS.map((e) => Type.Literal(e)), {
  $id: 'WebhookEvent',
  title: 'WebhookEvent',
  description: 'An event type. `ping` is sent by POST /v1/webhooks/{id}/test whatever the subscription.'
})

export const WebhookId = Type.String({ pattern: '^wh_[0-9A-Za-z]{16}$', description: 'Id of a webhook endpoint.', examples: ['wh_3kT9pQ2mX8vL5nR1'] })

const WebhookUrl = Type.String({
  minLength: 8,
  maxLength: 2048,
  format: 'uri',
  description: 'Where events are POSTed: https:// on a public address (http:// and private addresses only where the operator allows them).',
  examples: ['https://hooks.example.com/portal-ai']
})
const eventRef = () => Type.Unsafe<WebhookEventType>(Type.Ref('WebhookEvent'))
const Events = Type.Array(eventRef(), { minItems: 1, maxItems: WEBHOOK_EVENTS.length, uniqueItems: true, description: 'The events to send.' })
const Description = Type.String({ maxLength: 500, description: 'Your note about this endpoint.' })

export const CreateWebhookRequest = Type.Object({
  url: WebhookUrl,
  events: Events,
  description: Type.Optional(Description)
}, { $id: 'CreateWebhookRequest', title: 'CreateWebhookRequest', additionalProperties: false, examples: [{ url: 'https://hooks.example.com/portal-ai', events: ['staging.completed', 'staging.failed'] }] })

export const UpdateWebhookRequest = Type.Object({
  url: Type.Optional(WebhookUrl),
  events: Type.Optional(Events),
  description: Type.Optional(Type.Union([Description, Type.Null()])),
  enabled: Type.Optional(Type.Boolean({ description: '`true` turns an endpoint on again (also one disabled after failing for 3 days).' }))
}, { $id: 'UpdateWebhookRequest', title: 'UpdateWebhookRequest', additionalProperties: false, minProperties: 1, examples: [{ enabled: true }] })

const webhookExample = {
  id: 'wh_3kT9pQ2mX8vL5nR1',
  url: 'https://hooks.example.com/portal-ai',
  events: ['staging.completed'],
  description: null,
  enabled: true,
  disabledReason: null,
  createdAt: '2026-12-02T10:00:00.000Z',
  updatedAt: '2026-12-02T10:00:00.000Z'
}

export const Webhook = Type.Object({
  id: WebhookId,
  url: Type.String(),
  events: Type.Array(eventRef()),
  description: Type.Union([Type.String(), Type.Null()]),
  enabled: Type.Boolean({ description: 'false: no events are sent (turned off, or failing for 3 days).' }),
  disabledReason: Type.Union([Type.Literal('failing'), Type.Literal('by-user'), Type.Null()], { description: 'Why it is off.' }),
  createdAt: isoTime('When it was created.'),
  updatedAt: isoTime('When it last changed.')
}, { $id: 'Webhook', title: 'Webhook', additionalProperties: false, examples: [webhookExample] })

export const WebhookCreated = Type.Object({
  ...Webhook.properties,
  secret: Type.String({ description: 'The signing secret (`whsec_…`): shown only now. Verify each delivery\'s `webhook-signature` with it.' })
}, { $id: 'WebhookCreated', title: 'WebhookCreated', additionalProperties: false, examples: [{ ...webhookExample, secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' }] })

export const WebhookPage = Page(ref(Webhook), { $id: 'WebhookPage', description: 'Your webhook endpoints, newest first.' })

export const WebhookListQuery = Type.Object(PageQuery, { additionalProperties: false })

export const WebhookTestResult = Type.Object({
  deliveryId: Type.String({ description: 'The `webhook-id` header of the ping.' }),
  status: Type.Literal('queued')
}, { $id: 'WebhookTestResult', title: 'WebhookTestResult', additionalProperties: false, examples: [{ deliveryId: 'msg_2d4Kx9PqR7sT1vW3', status: 'queued' }] })

export type WebhookBody = Static<typeof Webhook>
export const webhookSchemas = [WebhookEvent, CreateWebhookRequest, UpdateWebhookRequest, Webhook, WebhookCreated, WebhookPage, WebhookTestResult]
