import type { FastifyReply } from 'fastify'

/** Server-sent events, one framing for every streamed route (the Settings Assistant's, a chat's). */
export const SSE_TYPE = 'text/event-stream'

/** One server-sent event; JSON keeps the data on one line. */
export const sseFrame = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

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
