import { Webhook, WebhookVerificationError } from 'standardwebhooks'
import type { components } from './schema.js'

/** A webhook delivery's body: the event type, when it happened, and the event's data (ids and statuses, never content). */
export interface WebhookDelivery {
  type: components['schemas']['WebhookEvent']
  timestamp: string
  data: Record<string, unknown>
}

export { WebhookVerificationError }

/**
 * Checks a delivery's Standard Webhooks signature (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the
 * endpoint's secret (`whsec_…`, shown once when the webhook was created) and a 5-minute tolerance, and answers the
 * parsed body. Pass the body exactly as received (the raw text or bytes, not re-serialized JSON). Throws
 * WebhookVerificationError on a bad or old signature.
 */
export function verifyWebhook (body: string | Uint8Array, headers: Headers | Record<string, string | string[] | undefined>, secret: string): WebhookDelivery {
  const flat: Record<string, string> = {}
  const entries = headers instanceof Headers ? [...headers.entries()] : Object.entries(headers)
  for (const [name, value] of entries) {
    if (value !== undefined) flat[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value
  }
  const text = typeof body === 'string' ? body : new TextDecoder().decode(body)
  return new Webhook(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret).verify(text, flat) as WebhookDelivery
}
