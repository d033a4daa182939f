import Type from 'typebox'
import { isoTime } from './refs.js'

const State = Type.Union([Type.Literal('created'), Type.Literal('retry'), Type.Literal('active'), Type.Literal('completed'), Type.Literal('cancelled'), Type.Literal('failed')])

export const JobSummary = Type.Object({
  id: Type.String({ format: 'uuid' }),
  queue: Type.String(),
  state: State,
  retryCount: Type.Integer({ minimum: 0 }),
  retryLimit: Type.Integer({ minimum: 0 }),
  createdAt: isoTime('When it was queued.'),
  startedAt: Type.Union([isoTime('When its last attempt started.'), Type.Null()]),
  completedAt: Type.Union([isoTime('When it ended.'), Type.Null()]),
  errorCode: Type.Union([Type.String(), Type.Null()], { description: 'Code of the last failed attempt (never its data or a message).' })
}, { $id: 'JobSummary', title: 'JobSummary', additionalProperties: false })

export const JobList = Type.Object({
  data: Type.Array(Type.Unsafe(Type.Ref('JobSummary')))
}, {
  $id: 'JobList',
  title: 'JobList',
  additionalProperties: false,
  examples: [{ data: [{ id: '0b6e5f7a-3c2d-4e1f-9a8b-7c6d5e4f3a2b', queue: 'webhooks.deliver', state: 'failed', retryCount: 30, retryLimit: 30, createdAt: '2026-12-01T09:00:00.000Z', startedAt: '2026-12-02T08:59:00.000Z', completedAt: '2026-12-02T08:59:10.000Z', errorCode: 'DELIVERY_FAILED' }] }]
})

export const JobsQuery = Type.Object({
  queue: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9.-]{0,100}$' })),
  state: Type.Optional(State),
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 })
}, { additionalProperties: false })

export const RekeyResult = Type.Object({
  keyId: Type.String({ description: 'The key everything is now encrypted under (the first of CONTENT_KEYS).' }),
  rekeyed: Type.Record(Type.String(), Type.Integer({ minimum: 0 }), { description: 'Rows re-encrypted per table.' })
}, { $id: 'RekeyResult', title: 'RekeyResult', additionalProperties: false, examples: [{ keyId: 'k2', rekeyed: { webhook_endpoints: 4 } }] })

export const jobSchemas = [JobSummary, JobList, RekeyResult]
