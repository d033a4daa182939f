import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ERROR_STATUS, type ErrorCodeName, type ErrorResponseBody } from '../schemas/errors.js'

/** An incoming X-Request-Id is kept only when it looks like an id, so logs cannot be forged through it. */
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/
export const REQUEST_ID_HEADER = 'x-request-id'

export function genReqId (req: IncomingMessage): string {
  const incoming = req.headers[REQUEST_ID_HEADER]
  return typeof incoming === 'string' && REQUEST_ID_PATTERN.test(incoming) ? incoming : randomUUID()
}

/** An error whose code, message and details are ours, written for the client, and safe to show and log. */
export class AppError extends Error {
  readonly code: ErrorCodeName
  readonly statusCode: number
  readonly details: Record<string, unknown> | undefined
  readonly headers: Record<string, string>

  constructor (code: ErrorCodeName, message: string, details?: Record<string, unknown>, headers: Record<string, string> = {}) {
    super(message)
    this.name = 'AppError'
    this.code = code
    this.statusCode = ERROR_STATUS[code]
    this.details = details
    this.headers = headers
  }
}

/** A field of a request that failed a check of the service's own (the schema's failures are named the same way). */
export interface FieldProblem { path: string, message: string }

/** A VALIDATION_ERROR naming the body fields that failed, as every schema failure is answered. */
export function invalidBody (...problems: FieldProblem[]): AppError {
  return new AppError('VALIDATION_ERROR', 'The request body is invalid: see details.fields.', {
    fields: problems.map((p) => ({ location: 'body', ...p }))
  })
}

export interface Envelope {
  status: number
  code: ErrorCodeName
  message: string
  details?: Record<string, unknown>
  headers?: Record<string, string>
}

/** Fastify's own errors whose message is fixed text (never request content), and what they mean for a client. */
const FRAMEWORK_ERRORS: Record<string, ErrorCodeName> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_ERROR',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'VALIDATION_ERROR',
  FST_ERR_CTP_INVALID_JSON_BODY: 'VALIDATION_ERROR'
}

/** A 4xx from elsewhere (a library, a stream) is answered with a fixed message: its own text may carry content. */
const STATUS_FALLBACK: Record<number, [ErrorCodeName, string]> = {
  400: ['VALIDATION_ERROR', 'The request is invalid.'],
  401: ['UNAUTHENTICATED', 'Authentication is required.'],
  403: ['NOT_ENTITLED', 'This credential may not do that.'],
  404: ['NOT_FOUND', 'Not found.'],
  413: ['PAYLOAD_TOO_LARGE', 'The request body is too large.'],
  415: ['UNSUPPORTED_MEDIA_TYPE', 'This content type is not accepted here.'],
  429: ['RATE_LIMITED', 'Too many requests: slow down and retry after the Retry-After delay.']
}

const INTERNAL: Envelope = { status: 500, code: 'INTERNAL_ERROR', message: 'Internal server error. Quote the requestId when reporting it.' }

/** An ajv error as Fastify passes it: ajv always sets `message` (messages are on by default). */
interface ValidationIssue { instancePath: string, keyword: string, message: string, params: Record<string, unknown> }

/**
 * One entry per failing field. A union of literals (an enum) fails once per branch: those collapse into
 * "must be one of …".
 */
function validationEnvelope (issues: ValidationIssue[], location: string): Envelope {
  const byPath = new Map<string, ValidationIssue[]>()
  for (const issue of issues) {
    // A missing field and a field the schema does not have are named by their own path.
    const named = issue.params.missingProperty ?? issue.params.additionalProperty
    const path = (typeof named === 'string' ? `${issue.instancePath}/${named}` : issue.instancePath) || '/'
    byPath.set(path, [...(byPath.get(path) ?? []), issue.keyword === 'additionalProperties' ? { ...issue, message: 'is not a field of this request' } : issue])
  }
  const fields = [...byPath].map(([path, list]) => {
    const allowed = list.filter((i) => i.keyword === 'const').map((i) => String(i.params.allowedValue))
    const isEnum = allowed.length > 0 && list.every((i) => i.keyword === 'const' || i.keyword === 'anyOf')
    return { location, path, message: isEnum ? `must be one of ${allowed.join(', ')}` : (list[0] as ValidationIssue).message }
  })
  return {
    status: 400,
    code: 'VALIDATION_ERROR',
    message: `The request ${location} is invalid: see details.fields.`,
    details: { fields }
  }
}

export function toEnvelope (err: FastifyError | AppError | Error): Envelope {
  if (err instanceof AppError) {
    return { status: err.statusCode, code: err.code, message: err.message, details: err.details, headers: err.headers }
  }
  const fe = err as FastifyError
  if (Array.isArray(fe.validation)) {
    // Fastify sets validationContext (body, querystring, params, headers) on every validation error.
    return validationEnvelope(fe.validation as ValidationIssue[], fe.validationContext as string)
  }
  const frameworkCode = typeof fe.code === 'string' ? FRAMEWORK_ERRORS[fe.code] : undefined
  if (frameworkCode !== undefined) {
    return { status: ERROR_STATUS[frameworkCode], code: frameworkCode, message: fe.message }
  }
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500
  const fallback = STATUS_FALLBACK[status]
  if (fallback !== undefined) return { status, code: fallback[0], message: fallback[1] }
  if (status >= 400 && status < 500) return { status: 400, code: 'VALIDATION_ERROR', message: 'The request is invalid.' }
  return INTERNAL
}

export function sendEnvelope (request: FastifyRequest, reply: FastifyReply, envelope: Envelope) {
  request.errorCode = envelope.code
  const body: ErrorResponseBody = {
    error: { code: envelope.code, message: envelope.message, requestId: request.id }
  }
  if (envelope.details !== undefined) body.error.details = envelope.details
  return reply
    .code(envelope.status)
    .headers(envelope.headers ?? {})
    .header(REQUEST_ID_HEADER, request.id)
    .type('application/json; charset=utf-8')
    .send(body)
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The error code this request was answered with, for the request log line. */
    errorCode: ErrorCodeName | null
  }
}

/**
 * The log line of a failed request. Error level asks an operator to act: a fault of the service. A documented 5xx
 * (a provider failing or slow, the database away) is a warn line: the events that call for action log their own.
 */
export function logFailure (request: FastifyRequest, err: Error, envelope: Envelope) {
  if (envelope.code === 'INTERNAL_ERROR') request.log.error({ err }, 'request failed')
  else if (envelope.status >= 500) request.log.warn({ err }, 'request failed')
}

/** Fastify option `frameworkErrors`: errors raised before routing (a malformed URL) get the envelope too. */
export function frameworkErrors (err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  request.log.info({ err }, 'request rejected before routing')
  return sendEnvelope(request, reply, { status: 400, code: 'VALIDATION_ERROR', message: 'The request URL is malformed.' })
}

/** The error envelope, stable codes, request ids and the 404 handler. */
export default fp(async function errors (app) {
  app.decorateRequest('errorCode', null)

  app.addHook('onRequest', async (request, reply) => {
    reply.header(REQUEST_ID_HEADER, request.id)
  })

  app.setErrorHandler(async (err: FastifyError, request, reply) => {
    const envelope = toEnvelope(err)
    logFailure(request, err, envelope)
    return sendEnvelope(request, reply, envelope)
  })

  app.setNotFoundHandler(async (request, reply) => {
    return sendEnvelope(request, reply, {
      status: 404,
      code: 'NOT_FOUND',
      message: 'No such route: check the method and path against the API reference at /docs.'
    })
  })
}, { name: 'errors', fastify: '5.x' })
