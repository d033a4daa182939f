import Type, { type Static } from 'typebox'

/** Every error code the API can answer with; the list is part of the contract. */
export const ErrorCode = Type.Union([
  Type.Literal('VALIDATION_ERROR'),
  Type.Literal('UNAUTHENTICATED'),
  Type.Literal('TOKEN_EXPIRED'),
  Type.Literal('NOT_ENTITLED'),
  Type.Literal('LICENSE_INACTIVE'),
  Type.Literal('NOT_FOUND'),
  Type.Literal('PAYLOAD_TOO_LARGE'),
  Type.Literal('UNSUPPORTED_MEDIA_TYPE'),
  Type.Literal('INVALID_IMAGE'),
  Type.Literal('IMAGE_TOO_LARGE'),
  Type.Literal('CONTENT_REJECTED'),
  Type.Literal('UNPROCESSABLE_DOCUMENT'),
  Type.Literal('QUOTA_EXCEEDED'),
  Type.Literal('INSUFFICIENT_CREDITS'),
  Type.Literal('RATE_LIMITED'),
  Type.Literal('PROVIDER_ERROR'),
  Type.Literal('PROVIDER_UNAVAILABLE'),
  Type.Literal('PROVIDER_NOT_CONFIGURED'),
  Type.Literal('PROVIDER_TIMEOUT'),
  Type.Literal('CONFLICT'),
  Type.Literal('STORAGE_UNAVAILABLE'),
  Type.Literal('INTEGRATION_NOT_CONNECTED'),
  Type.Literal('INTERNAL_ERROR')
], {
  $id: 'ErrorCode',
  title: 'ErrorCode',
  description: 'Stable machine-readable error code. New codes are only ever added, never renamed.',
  examples: ['VALIDATION_ERROR']
})
export type ErrorCodeName = Static<typeof ErrorCode>

/** HTTP status of each code: one code never changes its status. */
export const ERROR_STATUS: Record<ErrorCodeName, number> = {
  VALIDATION_ERROR: 400,
  UNAUTHENTICATED: 401,
  TOKEN_EXPIRED: 401,
  NOT_ENTITLED: 403,
  LICENSE_INACTIVE: 403,
  NOT_FOUND: 404,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INVALID_IMAGE: 422,
  IMAGE_TOO_LARGE: 422,
  CONTENT_REJECTED: 422,
  UNPROCESSABLE_DOCUMENT: 422,
  QUOTA_EXCEEDED: 402,
  INSUFFICIENT_CREDITS: 402,
  RATE_LIMITED: 429,
  PROVIDER_ERROR: 502,
  PROVIDER_UNAVAILABLE: 503,
  PROVIDER_NOT_CONFIGURED: 503,
  PROVIDER_TIMEOUT: 504,
  CONFLICT: 409,
  STORAGE_UNAVAILABLE: 503,
  INTEGRATION_NOT_CONNECTED: 409,
  INTERNAL_ERROR: 500
}

export const ErrorResponse = Type.Object({
  error: Type.Object({
    code: Type.Unsafe<ErrorCodeName>(Type.Ref('ErrorCode')),
    message: Type.String({ description: 'A sentence for a developer; never contains request content.' }),
    requestId: Type.String({ description: 'Echo of the X-Request-Id header; quote it when reporting a problem.' }),
    details: Type.Optional(Type.Record(Type.String(), Type.Unknown(), {
      description: 'Code-specific facts, e.g. the failing fields of a VALIDATION_ERROR or resetsAt of QUOTA_EXCEEDED.'
    }))
  }, { additionalProperties: false })
}, {
  $id: 'ErrorResponse',
  title: 'ErrorResponse',
  description: 'The one error envelope of every non-2xx response (the OpenAI-compatible routes under /v1/openai answer in OpenAI\'s error shape instead, with the same codes).',
  additionalProperties: false,
  examples: [{
    error: {
      code: 'VALIDATION_ERROR',
      message: 'The request is invalid: see details.fields.',
      requestId: '7f2c1f9e-3b7a-4c59-9d43-6f0b1c2a9e10',
      details: { fields: [{ location: 'body', path: '/message', message: 'must NOT have more than 2000 characters' }] }
    }
  }]
})
export type ErrorResponseBody = Static<typeof ErrorResponse>

const errorRef = Type.Unsafe<ErrorResponseBody>(Type.Ref('ErrorResponse'))

/** The error statuses of these codes (INTERNAL_ERROR always among them), each with its codes, in status order. */
export function errorStatuses (codes: ErrorCodeName[]): Array<[number, ErrorCodeName[]]> {
  const byStatus = new Map<number, ErrorCodeName[]>()
  for (const code of [...codes, 'INTERNAL_ERROR'] as ErrorCodeName[]) {
    const status = ERROR_STATUS[code]
    const list = byStatus.get(status) ?? []
    if (!list.includes(code)) list.push(code)
    byStatus.set(status, list)
  }
  return [...byStatus].sort((a, b) => a[0] - b[0])
}

/**
 * Response schemas for the error statuses a route can send, each described by the codes it carries,
 * so the contract says exactly which codes a client has to handle on that route.
 */
export function errorResponses (...codes: ErrorCodeName[]) {
  const out: Record<number, typeof errorRef> = {}
  for (const [status, list] of errorStatuses(codes)) {
    out[status] = Type.Unsafe<ErrorResponseBody>({ ...errorRef, description: `Error envelope with code ${list.join(' or ')}.` })
  }
  return out
}
