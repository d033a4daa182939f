import { readFileSync } from 'node:fs'
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import addFormatsModule from 'ajv-formats'

/**
 * The committed contract (openapi/openapi.json) as a checker of real responses: the smoke suite and the
 * tests of docs/api.md hold what they see against it, so a changed status, content type or body shape fails.
 */
export interface OpenApiOperation {
  operationId: string
  requestBody?: { content: Record<string, { schema: unknown }> }
  responses: Record<string, { content?: Record<string, { schema: { 'x-events'?: Record<string, string> } }> }>
}
export interface OpenApiDocument {
  paths: Record<string, Record<string, OpenApiOperation>>
  components: { schemas: Record<string, unknown> }
}

export const CONTRACT_FILE = new URL('../../openapi/openapi.json', import.meta.url)
const CONTRACT_ID = 'https://portal-ai-api.invalid/openapi.json'

// ajv-formats is CommonJS with its function as `default`, which Node's ESM loader wraps once more.
const addFormats = (addFormatsModule as unknown as { default: (ajv: Ajv2020) => Ajv2020 }).default

const pointer = (...segments: string[]) => segments.map((s) => s.replaceAll('~', '~0').replaceAll('/', '~1')).join('/')

export interface Located { method: string, path: string, operation: OpenApiOperation }

export class Contract {
  readonly document: OpenApiDocument
  readonly operations: Map<string, Located>
  private readonly ajv: Ajv2020
  private readonly compiled = new Map<string, ValidateFunction>()

  constructor (document: OpenApiDocument) {
    this.document = document
    // strict: false, as an OpenAPI document holds keywords that are not JSON Schema (paths, x-…, examples in parameters).
    this.ajv = new Ajv2020({ strict: false, allErrors: true })
    addFormats(this.ajv)
    this.ajv.addSchema({ ...document, $id: CONTRACT_ID })
    this.operations = new Map()
    for (const [path, ops] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(ops)) this.operations.set(operation.operationId, { method: method.toUpperCase(), path, operation })
    }
  }

  static committed (): Contract {
    return new Contract(JSON.parse(readFileSync(CONTRACT_FILE, 'utf8')) as OpenApiDocument)
  }

  operation (operationId: string): Located {
    const found = this.operations.get(operationId)
    if (found === undefined) throw new Error(`the contract has no operation ${operationId}`)
    return found
  }

  /** Problems of one response (status, content type, body) against the contract; empty when it conforms. */
  check (operationId: string, status: number, contentType: string, body: unknown): string[] {
    const { method, path, operation } = this.operation(operationId)
    const response = operation.responses[String(status)]
    if (response === undefined) return [`${method} ${path} (${operationId}) does not document status ${status} (documented: ${Object.keys(operation.responses).join(', ')})`]
    const mediaType = contentType.split(';')[0]?.trim().toLowerCase() ?? ''
    // A response documented without content (204, 304) conforms when none came.
    if (response.content === undefined && mediaType === '') return []
    // The exact media type, else a documented range (`image/*`, `*/*`), as OpenAPI matches them.
    const content = response.content ?? {}
    const documented = [mediaType, `${mediaType.split('/')[0] ?? ''}/*`, '*/*'].find((type) => content[type] !== undefined)
    if (documented === undefined) return [`${operationId} ${status}: content type ${mediaType || '(none)'} is not documented (documented: ${Object.keys(content).join(', ') || 'no body'})`]
    return [
      ...this.checkSchema(`#/${pointer('paths', path, method.toLowerCase(), 'responses', String(status), 'content', documented, 'schema')}`, body),
      ...(documented === 'text/event-stream' ? this.checkEvents(operationId, String(body)) : [])
    ].map((problem) => `${operationId} ${status} ${mediaType}: ${problem}`)
  }

  /** The component of each event of a streamed operation (the contract's `x-events`), or undefined when it streams nothing. */
  streamEvents (operationId: string): Record<string, string> | undefined {
    const responses = Object.values(this.operation(operationId).operation.responses)
    return responses.map((r) => r.content?.['text/event-stream']?.schema['x-events']).find((events) => events !== undefined)
  }

  /** Problems of a stream's events: each one named in `x-events`, its data JSON conforming to its component (OpenAI's `[DONE]` aside). */
  private checkEvents (operationId: string, text: string): string[] {
    const components = this.streamEvents(operationId) ?? {}
    return parseSse(text).flatMap(({ event, data }, i) => {
      if (data === '[DONE]') return []
      const component = components[event]
      if (component === undefined) return [`event ${i}: ${event} is not an event of the contract (${Object.keys(components).join(', ')})`]
      let value: unknown
      try { value = JSON.parse(data) } catch { return [`event ${i} (${event}): data is not JSON`] }
      // Under /v1/openai a failure is a `data: {"error": …}` event in OpenAI's error shape.
      if (event === 'message' && typeof value === 'object' && value !== null && 'error' in value) return this.checkComponent('OpenAIErrorResponse', value)
      return this.checkComponent(component, value).map((p) => `event ${i} (${event}): ${p}`)
    })
  }

  /** Problems of a request body against what the operation accepts. */
  checkRequest (operationId: string, mediaType: string, body: unknown): string[] {
    const { method, path, operation } = this.operation(operationId)
    if (operation.requestBody?.content[mediaType] === undefined) return [`${operationId} takes no ${mediaType} body`]
    return this.checkSchema(`#/${pointer('paths', path, method.toLowerCase(), 'requestBody', 'content', mediaType, 'schema')}`, body)
      .map((problem) => `${operationId} request: ${problem}`)
  }

  /** Problems of a value against a named component (`AssistantDone`, `Suggestion`, …). */
  checkComponent (name: string, value: unknown): string[] {
    if (this.document.components.schemas[name] === undefined) return [`the contract has no component ${name}`]
    return this.checkSchema(`#/${pointer('components', 'schemas', name)}`, value).map((problem) => `${name}: ${problem}`)
  }

  private checkSchema (fragment: string, value: unknown): string[] {
    let validate = this.compiled.get(fragment)
    if (validate === undefined) {
      validate = this.ajv.compile({ $ref: `${CONTRACT_ID}${fragment}` })
      this.compiled.set(fragment, validate)
    }
    if (validate(value)) return []
    return (validate.errors ?? []).map((e) => `${e.instancePath || '(root)'} ${e.message ?? 'is invalid'}`)
  }
}

/** One server-sent event as the wire carries it. */
export interface SseEvent { event: string, data: string }

/** Splits a `text/event-stream` body into its events (`event:` and `data:` lines, blank-line separated). */
export function parseSse (text: string): SseEvent[] {
  const events: SseEvent[] = []
  for (const block of text.replaceAll('\r\n', '\n').split('\n\n')) {
    let event = 'message'
    const data: string[] = []
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim()
      else if (line.startsWith('data:')) data.push(line.slice(5).trimStart())
    }
    if (data.length > 0) events.push({ event, data: data.join('\n') })
  }
  return events
}

/**
 * Problems of a whole assistant stream: every event known and conforming, deltas first, then suggestions,
 * then exactly one closing `done` or `error` as the last event.
 */
export function checkAssistantStream (contract: Contract, events: SseEvent[]): string[] {
  const problems: string[] = []
  const components = contract.streamEvents('askSettingsAssistant') ?? {}
  const order = ['delta', 'suggestion', 'done']
  let stage = 0
  events.forEach(({ event, data }, i) => {
    const component = components[event]
    if (component === undefined) {
      problems.push(`event ${i}: unknown event type ${event}`)
      return
    }
    let value: unknown
    try {
      value = JSON.parse(data)
    } catch {
      problems.push(`event ${i} (${event}): data is not JSON`)
      return
    }
    problems.push(...contract.checkComponent(component, value).map((p) => `event ${i} (${event}): ${p}`))
    const closing = event === 'done' || event === 'error'
    if (closing && i !== events.length - 1) problems.push(`event ${i}: ${event} is not the last event`)
    if (!closing) {
      const at = order.indexOf(event)
      if (at < stage) problems.push(`event ${i}: ${event} after ${order[stage] ?? ''}`)
      stage = Math.max(stage, at)
    }
  })
  const last = events.at(-1)?.event
  if (last !== 'done' && last !== 'error') problems.push('the stream does not end with a done or error event')
  return problems
}
