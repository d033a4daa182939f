import Type, { type TSchema } from 'typebox'
import type { FastifyReply } from 'fastify'

/** Server-sent events, one framing for every streamed route (the Settings Assistant's, a chat's). */
export const SSE_TYPE = 'text/event-stream'

/** One server-sent event; JSON keeps the data on one line. */
export const sseFrame = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

/**
 * The schema of a `text/event-stream` response: a string described in prose, with `x-events` naming the
 * component schema of each event's `data` (event name → schema id). The TypeScript client types its
 * stream iterators from it, and the smoke suite holds every event it reads against it.
 */
export function sseSchema (description: string, events: Record<string, TSchema>) {
  const named: Record<string, string> = {}
  for (const [event, schema] of Object.entries(events)) {
    const id = (schema as { $id?: unknown }).$id
    if (typeof id !== 'string') throw new Error(`the ${event} event's schema has no $id`)
    named[event] = id
  }
  return Type.String({ description, 'x-events': named })
}

export function wantsStream (accept: string | undefined): boolean {
  return accept !== undefined && accept.split(',').some((part) => part.split(';')[0]?.trim().toLowerCase() === SSE_TYPE)
}

/** The headers of a stream: no caching, no buffering by a proxy. */
export function sseHeaders (reply: FastifyReply) {
  return reply
    .type(`${SSE_TYPE}; charset=utf-8`)
    .header('cache-control', 'no-cache, no-transform')
    .header('x-accel-buffering', 'no')
}
