import Type, { type Static } from 'typebox'
import { isoTime } from './refs.js'
import type { ModeSchema } from './identity.js'

const refTo = <T>(id: string) => Type.Unsafe<T>(Type.Ref(id))
const nullableTime = (description: string) => Type.Union([isoTime(description), Type.Null()], { description })

export const UserId = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^[A-Za-z0-9._:@|-]+$',
  description: 'The portal user id (`sub` of the portal token).'
})

export const LicenseStatus = Type.Union([Type.Literal('active'), Type.Literal('suspended'), Type.Literal('expired')], {
  description: 'Only `active` (and not past validUntil) lets the user mint AI tokens.'
})

export const LicenseInput = Type.Object({
  plan: Type.String({ minLength: 1, maxLength: 32, description: 'A plan of the plans file (bundled: free, pro, team).' }),
  status: Type.Optional(LicenseStatus),
  validUntil: Type.Optional(Type.Union([isoTime('End of the license; null for no end.'), Type.Null()]))
}, {
  $id: 'LicenseInput',
  title: 'LicenseInput',
  additionalProperties: false,
  examples: [{ plan: 'pro', status: 'active', validUntil: '2027-01-01T00:00:00.000Z' }]
})

export const License = Type.Object({
  userId: UserId,
  plan: Type.String(),
  status: LicenseStatus,
  validUntil: nullableTime('End of the license, or null.'),
  updatedAt: isoTime('Last change.')
}, {
  $id: 'License',
  title: 'License',
  additionalProperties: false,
  examples: [{ userId: 'user-42', plan: 'pro', status: 'active', validUntil: null, updatedAt: '2026-11-22T10:00:00.000Z' }]
})

export const CreateKeyRequest = Type.Object({
  userId: UserId,
  mode: refTo<Static<typeof ModeSchema>>('Mode'),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 80, description: 'A label to recognise the key.' }))
}, {
  $id: 'CreateKeyRequest',
  title: 'CreateKeyRequest',
  additionalProperties: false,
  examples: [{ userId: 'qa-user', mode: 'test', name: 'QA smoke' }]
})

const apiKeyProperties = {
  id: Type.String({ description: 'Key id, used to revoke it.' }),
  userId: UserId,
  mode: refTo<Static<typeof ModeSchema>>('Mode'),
  name: Type.Union([Type.String(), Type.Null()]),
  prefix: Type.String({ description: 'The first characters of the key, to recognise it.' }),
  createdAt: isoTime('Creation time.'),
  lastUsedAt: nullableTime('Last use (recorded within about 30 s), or null.'),
  revokedAt: nullableTime('Revocation time, or null while the key works.')
}

export const ApiKey = Type.Object(apiKeyProperties, {
  $id: 'ApiKey',
  title: 'ApiKey',
  description: 'An API key as listed: never the key itself.',
  additionalProperties: false
})

export const ApiKeyCreated = Type.Object({
  ...apiKeyProperties,
  key: Type.String({ description: 'The API key. Shown this once: only its SHA-256 is stored.' })
}, {
  $id: 'ApiKeyCreated',
  title: 'ApiKeyCreated',
  additionalProperties: false,
  examples: [{
    id: 'key_3kTMd9qLx0aB7cVe',
    userId: 'qa-user',
    mode: 'test',
    name: 'QA smoke',
    prefix: 'pak_test_4fQ1zA',
    createdAt: '2026-11-22T10:00:00.000Z',
    lastUsedAt: null,
    revokedAt: null,
    key: 'pak_test_4fQ1zA0000000000000000000000000000000000'
  }]
})

export const ApiKeyList = Type.Object({
  keys: Type.Array(refTo<Static<typeof ApiKey>>('ApiKey'))
}, { $id: 'ApiKeyList', title: 'ApiKeyList', additionalProperties: false })

export const AuditAction = Type.Union([
  Type.Literal('token.minted'), Type.Literal('key.created'), Type.Literal('key.revoked'),
  Type.Literal('license.changed'), Type.Literal('access.denied'), Type.Literal('webhook.created'), Type.Literal('webhook.deleted'),
  Type.Literal('webhook.disabled'), Type.Literal('user-data.deleted'), Type.Literal('content.rekeyed'), Type.Literal('job.retried'), Type.Literal('credits.granted'),
  Type.Literal('account.created'), Type.Literal('account.password-changed'), Type.Literal('account.deleted'),
  Type.Literal('integration.connected'), Type.Literal('integration.disconnected')
], { $id: 'AuditAction', title: 'AuditAction' })

export const AuditEvent = Type.Object({
  id: Type.String({ description: 'Increasing id; also the pagination cursor.' }),
  at: isoTime('When it happened.'),
  actor: Type.String({ description: '`user:<id>`, `admin`, `system` or `anonymous`.' }),
  action: refTo<Static<typeof AuditAction>>('AuditAction'),
  target: Type.Union([Type.String(), Type.Null()], { description: '`user:<id>`, `key:<id>` or `METHOD /route`.' }),
  outcome: Type.String({ description: '`ok`, or the error code of a denial.' }),
  requestId: Type.Union([Type.String(), Type.Null()]),
  details: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()], { description: 'Ids, plans, features and modes; never content or keys.' })
}, { $id: 'AuditEvent', title: 'AuditEvent', additionalProperties: false })

export const AuditPage = Type.Object({
  events: Type.Array(refTo<Static<typeof AuditEvent>>('AuditEvent')),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for older events; null on the last page.' })
}, { $id: 'AuditPage', title: 'AuditPage', additionalProperties: false })

export const adminSchemas = [LicenseInput, License, CreateKeyRequest, ApiKey, ApiKeyCreated, ApiKeyList, AuditAction, AuditEvent, AuditPage]
