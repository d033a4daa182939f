import { EventSourceParserStream } from 'eventsource-parser/stream'
import { PortalApiError } from './errors.js'
import type { operationEvents } from './schema.js'

/** The operations answered with server-sent events. */
export type StreamedOperation = keyof operationEvents

/** One event of a streamed operation, typed by its name; `error` events are thrown as PortalApiError instead. */
export type StreamEvent<Op extends StreamedOperation> = {
  [E in Exclude<keyof operationEvents[Op], 'error'>]: { event: E, data: operationEvents[Op][E] }
}[Exclude<keyof operationEvents[Op], 'error'>]

/**
 * Reads a `text/event-stream` answer as its events, each `data` parsed as JSON. An `error` event (or, under
 * /v1/openai, a `data: {"error": …}` event) ends the stream with a PortalApiError carrying the envelope; OpenAI's
 * closing `data: [DONE]` ends it quietly. Leaving the loop early cancels the answer.
 */
export async function * readEvents<Op extends StreamedOperation> (response: Response): AsyncGenerator<StreamEvent<Op>, void, undefined> {
  if (response.body === null) return
  const reader = response.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream()).getReader()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      if (value.data === '[DONE]') return
      const event = value.event ?? 'message'
      const data = JSON.parse(value.data) as unknown
      if (event === 'error' || (event === 'message' && typeof data === 'object' && data !== null && 'error' in data)) {
        throw new PortalApiError(response.status, data, response.headers)
      }
      yield { event, data } as StreamEvent<Op>
    }
  } finally {
    await reader.cancel().catch(() => {})
  }
}
