import fc from 'fast-check'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { adminHeaders, build, mint, multipart, userWithKey } from './helper.js'
import { interceptNetwork } from './network.js'

/**
 * The bad-input corpus: generated requests (fast-check, over the request schemas and around them) and hand-picked
 * ones. Whatever comes in, the answer is a documented 4xx in the envelope or a success, never a 5xx, and the
 * service stays ready.
 */
interface Seen { cases: number, fiveHundreds: string[] }

async function setup (t: Test) {
  interceptNetwork(t) // test mode never leaves the process: any outbound request fails the test
  const { app } = await build(t)
  const { key, userId } = await userWithKey(app, { mode: 'test', plan: 'team' })
  const { token } = await mint(app, key)
  return { app, key, token, userId }
}

function check (seen: Seen, what: string, res: LightMyRequestResponse) {
  seen.cases++
  if (res.statusCode >= 500) seen.fiveHundreds.push(`${what}: ${res.statusCode} ${res.body.slice(0, 200)}`)
  else if (res.statusCode >= 400) {
    const body = res.json() as { error?: { code?: unknown, requestId?: unknown } }
    if (typeof body.error?.code !== 'string' || typeof body.error.requestId !== 'string') seen.fiveHundreds.push(`${what}: ${res.statusCode} without the envelope`)
  }
}

const ask = (app: FastifyInstance, token: string, payload: string | Buffer, contentType = 'application/json') =>
  app.inject({ method: 'POST', url: '/v1/ai/settings-assistant/messages', headers: { authorization: `Bearer ${token}`, 'content-type': contentType }, payload })

/** Values of every JSON type, nested, with the fields of the request schema mixed in at the top. */
const jsonValue = fc.jsonValue({ maxDepth: 4 })
const assistantBody = fc.oneof(
  jsonValue,
  fc.record({
    message: fc.oneof(fc.string({ maxLength: 2100 }), jsonValue),
    history: fc.oneof(fc.array(fc.record({ role: fc.oneof(fc.constantFrom('user', 'assistant', 'system', ''), jsonValue), content: fc.oneof(fc.string(), jsonValue) }, { requiredKeys: [] }), { maxLength: 12 }), jsonValue),
    context: fc.oneof(fc.record({
      appVersion: fc.oneof(fc.string({ maxLength: 50 }), jsonValue),
      platform: fc.oneof(fc.constantFrom('windows', 'macos', 'linux', 'amiga'), jsonValue),
      settings: fc.oneof(fc.array(fc.record({ id: fc.oneof(fc.constantFrom('export.sharpening', 'export.format', '__proto__', 'constructor.prototype'), fc.string()), value: jsonValue }, { requiredKeys: [] }), { maxLength: 45 }), jsonValue)
    }, { requiredKeys: [] }), jsonValue),
    extra: jsonValue
  }, { requiredKeys: [] })
)

t.test('generated request bodies, queries and credentials never get a 5xx', async (t) => {
  const { app, key, token } = await setup(t)
  const seen: Seen = { cases: 0, fiveHundreds: [] }

  await fc.assert(fc.asyncProperty(assistantBody, async (body) => {
    check(seen, 'assistant body', await ask(app, token, JSON.stringify(body)))
  }), { numRuns: 120, seed: 7 })

  await fc.assert(fc.asyncProperty(fc.string({ maxLength: 300 }), fc.string({ maxLength: 30 }), async (text, contentType) => {
    check(seen, 'assistant raw body', await ask(app, token, text, contentType.length > 0 ? contentType : 'application/json'))
  }), { numRuns: 40, seed: 8 })

  await fc.assert(fc.asyncProperty(fc.dictionary(fc.constantFrom('limit', 'cursor', 'mode', 'x'), fc.string({ maxLength: 30 })), async (query) => {
    check(seen, 'usage query', await app.inject({ url: '/v1/ai/usage', query, headers: { authorization: `Bearer ${token}` } }))
    check(seen, 'admin audit query', await app.inject({ url: '/v1/admin/audit', query, headers: adminHeaders }))
  }), { numRuns: 30, seed: 9 })

  await fc.assert(fc.asyncProperty(fc.string({ maxLength: 200 }), async (credential) => {
    const res = await app.inject({ url: '/v1/ai/entitlements', headers: { authorization: credential.replace(/[\r\n]/g, '') } })
    check(seen, 'authorization header', res)
    if (res.statusCode !== 401) seen.fiveHundreds.push(`authorization header: ${res.statusCode} instead of 401`)
  }), { numRuns: 40, seed: 10 })

  await fc.assert(fc.asyncProperty(fc.string({ minLength: 1, maxLength: 140 }), jsonValue, async (userId, body) => {
    check(seen, 'admin license', await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${encodeURIComponent(userId)}`, headers: adminHeaders, payload: JSON.stringify(body) }))
  }), { numRuns: 25, seed: 11 })

  const webhookBody = fc.oneof(jsonValue, fc.record({
    url: fc.oneof(fc.webUrl({ withQueryParameters: true }), fc.string({ maxLength: 3000 }), fc.constantFrom('https://127.0.0.1/h', 'https://[::1]/h', 'file:///etc/passwd', 'https://8.8.8.8/h'), jsonValue),
    events: fc.oneof(fc.array(fc.oneof(fc.constantFrom('ping', 'staging.completed', 'scan.completed', 'nope', ''), jsonValue), { maxLength: 8 }), jsonValue),
    description: fc.oneof(fc.string({ maxLength: 600 }), jsonValue),
    enabled: jsonValue
  }, { requiredKeys: [] }))
  const webhookAuth = { authorization: `Bearer ${token}` }
  await fc.assert(fc.asyncProperty(webhookBody, fc.string({ maxLength: 40 }), async (body, id) => {
    check(seen, 'webhook create', await app.inject({ method: 'POST', url: '/v1/webhooks', headers: webhookAuth, payload: JSON.stringify(body) }))
    check(seen, 'webhook change', await app.inject({ method: 'PATCH', url: `/v1/webhooks/${encodeURIComponent(id)}`, headers: webhookAuth, payload: JSON.stringify(body) }))
    check(seen, 'webhook read', await app.inject({ url: `/v1/webhooks/${encodeURIComponent(id)}`, headers: webhookAuth }))
  }), { numRuns: 40, seed: 12 })

  // Chats: generated bodies, ids and queries on every route, against a real chat of this user and made-up ones.
  const chat = (await app.inject({ method: 'POST', url: '/v1/chats', headers: webhookAuth, payload: {} })).json<{ id: string }>()
  const chatBody = fc.oneof(jsonValue, fc.record({
    content: fc.oneof(fc.string({ maxLength: 9000 }), fc.constant('x'.repeat(8001)), jsonValue),
    model: fc.oneof(fc.constantFrom('gpt-4o-mini', 'claude-sonnet-4-5', 'no-such-model', ''), jsonValue),
    title: fc.oneof(fc.string({ maxLength: 300 }), jsonValue),
    contextRef: fc.oneof(fc.string({ maxLength: 300 }), jsonValue),
    archived: jsonValue,
    rating: fc.oneof(fc.constantFrom(1, -1, 0, 2), jsonValue),
    comment: fc.oneof(fc.string({ maxLength: 1200 }), jsonValue)
  }, { requiredKeys: [] }))
  await fc.assert(fc.asyncProperty(chatBody, fc.oneof(fc.constant(chat.id), fc.string({ maxLength: 40 })), fc.dictionary(fc.constantFrom('cursor', 'limit', 'archived'), fc.string({ maxLength: 60 })), async (body, id, query) => {
    const path = `/v1/chats/${encodeURIComponent(id)}`
    check(seen, 'chat create', await app.inject({ method: 'POST', url: '/v1/chats', headers: webhookAuth, payload: JSON.stringify(body) }))
    check(seen, 'chat change', await app.inject({ method: 'PATCH', url: path, headers: webhookAuth, payload: JSON.stringify(body) }))
    check(seen, 'chat message', await app.inject({ method: 'POST', url: `${path}/messages`, headers: webhookAuth, payload: JSON.stringify(body) }))
    check(seen, 'chat stream', await app.inject({ method: 'POST', url: `${path}/stream`, headers: webhookAuth, payload: JSON.stringify(body) }))
    check(seen, 'chat feedback', await app.inject({ method: 'POST', url: `${path}/messages/${encodeURIComponent(id)}/feedback`, headers: webhookAuth, payload: JSON.stringify(body) }))
    check(seen, 'chat messages', await app.inject({ url: `${path}/messages`, query, headers: webhookAuth }))
    check(seen, 'chat list', await app.inject({ url: '/v1/chats', query, headers: webhookAuth }))
  }), { numRuns: 30, seed: 14 })

  // Billing: generated amounts, estimates, periods, cursors and transaction ids.
  const money = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(-1, 0, 1.5, 1e12, Number.MAX_SAFE_INTEGER), fc.string({ maxLength: 20 }), jsonValue)
  const billingBody = fc.oneof(jsonValue, fc.record({
    amountCents: money,
    reason: fc.oneof(fc.string({ maxLength: 300 }), jsonValue),
    mode: fc.oneof(fc.constantFrom('live', 'test', 'prod'), jsonValue),
    model: fc.oneof(fc.constantFrom('gpt-4o-mini', 'gpt-4.1', 'no-such-model', ''), jsonValue),
    inputTokens: money,
    estimatedOutputTokens: money,
    messages: fc.oneof(fc.array(fc.record({ role: fc.oneof(fc.constantFrom('user', 'assistant', 'system'), jsonValue), content: fc.oneof(fc.string({ maxLength: 200 }), jsonValue) }, { requiredKeys: [] }), { maxLength: 5 }), jsonValue)
  }, { requiredKeys: [] }))
  await fc.assert(fc.asyncProperty(billingBody, fc.oneof(fc.constantFrom('use_1', 'grant_1', 'use_99999999999999999999'), fc.string({ maxLength: 40 })), fc.dictionary(fc.constantFrom('cursor', 'limit', 'period', 'mode'), fc.string({ maxLength: 60 })), async (body, id, query) => {
    check(seen, 'credit grant', await app.inject({ method: 'POST', url: `/v1/admin/credits/${encodeURIComponent(`bad-input-${id}`)}`, headers: adminHeaders, payload: JSON.stringify(body) }))
    check(seen, 'credit show', await app.inject({ url: `/v1/admin/credits/${encodeURIComponent(`bad-input-${id}`)}`, query, headers: adminHeaders }))
    check(seen, 'estimate', await app.inject({ method: 'POST', url: '/v1/ai/estimate', headers: webhookAuth, payload: JSON.stringify(body) }))
    check(seen, 'billing usage', await app.inject({ url: '/v1/billing/usage', query, headers: webhookAuth }))
    check(seen, 'transactions', await app.inject({ url: '/v1/billing/transactions', query, headers: webhookAuth }))
    check(seen, 'transaction', await app.inject({ url: `/v1/billing/transactions/${encodeURIComponent(id)}`, headers: webhookAuth }))
  }), { numRuns: 30, seed: 15 })

  // Stagings: generated multipart fields and bytes on both submits; generated ids and queries on every read.
  const stagingField = fc.oneof(fc.string({ maxLength: 300 }), fc.constantFrom('modern_luxury', 'living_room', 'premium', 'standard', 'x'.repeat(201), ''))
  const stagingParts = fc.array(fc.record({ name: fc.constantFrom('image', 'images', 'style', 'roomType', 'qualityMode', 'propertyName', 'other'), value: stagingField, file: fc.boolean() }), { maxLength: 14 })
  await fc.assert(fc.asyncProperty(stagingParts, fc.uint8Array({ maxLength: 64 }), fc.oneof(fc.constantFrom('stg_0000000000000000', 'bat_0000000000000000'), fc.string({ maxLength: 40 })), fc.dictionary(fc.constantFrom('cursor', 'limit', 'status', 'batchId'), fc.string({ maxLength: 60 })), async (parts, bytes, id, query) => {
    const body = multipart(parts.map((p) => p.file ? { name: p.name, value: Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.from(bytes)]), filename: 'x.jpg' } : { name: p.name, value: p.value }))
    const form = { ...webhookAuth, 'content-type': body.contentType }
    check(seen, 'staging submit', await app.inject({ method: 'POST', url: '/v1/ai/stagings', headers: form, payload: body.payload }))
    check(seen, 'staging batch submit', await app.inject({ method: 'POST', url: '/v1/ai/stagings/batches', headers: form, payload: body.payload }))
    check(seen, 'staging read', await app.inject({ url: `/v1/ai/stagings/${encodeURIComponent(id)}`, headers: webhookAuth }))
    check(seen, 'staging delete', await app.inject({ method: 'DELETE', url: `/v1/ai/stagings/${encodeURIComponent(id)}`, headers: webhookAuth }))
    check(seen, 'staging batch read', await app.inject({ url: `/v1/ai/stagings/batches/${encodeURIComponent(id)}`, headers: webhookAuth }))
    check(seen, 'staging list', await app.inject({ url: '/v1/ai/stagings', query, headers: webhookAuth }))
  }), { numRuns: 30, seed: 16 })

  await fc.assert(fc.asyncProperty(fc.string({ maxLength: 60 }), fc.dictionary(fc.constantFrom('expires', 'signature', 'cursor', 'limit', 'queue', 'state'), fc.string({ maxLength: 60 })), async (id, query) => {
    check(seen, 'file read', await app.inject({ url: `/v1/ai/files/${encodeURIComponent(id)}`, query }))
    check(seen, 'staging style preview', await app.inject({ url: `/v1/ai/staging/styles/${encodeURIComponent(id)}/preview.png`, query }))
    check(seen, 'webhook list', await app.inject({ url: '/v1/webhooks', query, headers: webhookAuth }))
    check(seen, 'admin jobs', await app.inject({ url: '/v1/admin/jobs', query, headers: adminHeaders }))
    check(seen, 'admin job retry', await app.inject({ method: 'POST', url: `/v1/admin/jobs/${encodeURIComponent(id)}/retry`, headers: adminHeaders }))
    check(seen, 'admin user data deletion', await app.inject({ method: 'DELETE', url: `/v1/admin/users/${encodeURIComponent(`bad-input-${id}`)}/data`, headers: adminHeaders }))
  }), { numRuns: 30, seed: 13 })

  t.ok(seen.cases >= 450, `${seen.cases} generated requests`)
  t.same(seen.fiveHundreds, [], 'no 5xx, and every refusal in the envelope')
  // The key is still usable: nothing above broke the service's state.
  t.equal((await app.inject({ method: 'POST', url: '/v1/ai/tokens', headers: { authorization: `Bearer ${key}` } })).statusCode, 201)
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200, 'the service stays ready')
})

t.test('hand-picked bad input: malformed, deep, huge, invalid UTF-8, tampered tokens, multipart abuse', async (t) => {
  const { app, token } = await setup(t)
  const seen: Seen = { cases: 0, fiveHundreds: [] }
  const expect = async (what: string, status: number, res: Promise<LightMyRequestResponse>) => {
    const answer = await res
    check(seen, what, answer)
    t.equal(answer.statusCode, status, `${what} → ${status} (got ${answer.statusCode})`)
  }

  await expect('truncated JSON', 400, ask(app, token, '{"message":"hi"'))
  await expect('trailing comma', 400, ask(app, token, '{"message":"hi",}'))
  await expect('a JSON string, not an object', 400, ask(app, token, '"hi"'))
  await expect('null', 400, ask(app, token, 'null'))
  await expect('deeply nested arrays', 400, ask(app, token, `{"message":"hi","context":${'['.repeat(5000)}${']'.repeat(5000)}}`))
  await expect('deeply nested objects', 400, ask(app, token, `{"message":"hi","x":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`))
  await expect('__proto__ key', 400, ask(app, token, '{"message":"hi","__proto__":{"admin":true}}'))
  await expect('constructor.prototype key', 400, ask(app, token, '{"message":"hi","constructor":{"prototype":{"admin":true}}}'))
  await expect('a body over the JSON limit', 413, ask(app, token, JSON.stringify({ message: 'x'.repeat(300 * 1024) })))
  await expect('a message of 2,001 characters', 400, ask(app, token, JSON.stringify({ message: 'x'.repeat(2001) })))
  // Invalid bytes decode to U+FFFD: a message like any other, not an error.
  await expect('invalid UTF-8 bytes', 200, ask(app, token, Buffer.from([0x7b, 0x22, 0x6d, 0x65, 0x73, 0x73, 0x61, 0x67, 0x65, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0xc3, 0x28, 0x22, 0x7d])))
  await expect('lone surrogates', 200, ask(app, token, '{"message":"\\ud800 hi \\udfff"}'))
  await expect('control characters', 200, ask(app, token, JSON.stringify({ message: 'a\u0000b\u001bc\u2028d' })))
  await expect('XML as JSON', 400, ask(app, token, '<message>hi</message>'))
  await expect('form-encoded body', 415, ask(app, token, 'message=hi', 'application/x-www-form-urlencoded'))
  // JSON is UTF-8 whatever the header says (RFC 8259).
  await expect('a content type with a bogus charset', 200, ask(app, token, '{"message":"hi"}', 'application/json; charset=ebcdic'))

  const [header, payload, signature] = token.split('.') as [string, string, string]
  const none = Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')
  const tampered: Record<string, string> = {
    header: `${Buffer.from('{"alg":"HS512","typ":"JWT"}').toString('base64url')}.${payload}.${signature}`,
    'alg none': `${none}.${payload}.`,
    payload: `${header}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), plan: 'team', mode: 'live' })).toString('base64url')}.${signature}`,
    signature: `${header}.${payload}.${signature.slice(0, -4)}AAAA`,
    'no signature': `${header}.${payload}`,
    'four segments': `${token}.x`,
    'not base64': `${header}.%%%.${signature}`
  }
  for (const [what, bad] of Object.entries(tampered)) await expect(`token tampered: ${what}`, 401, ask(app, bad, '{"message":"hi"}'))
  await expect('two Authorization schemes', 401, app.inject({ url: '/v1/ai/entitlements', headers: { authorization: `Basic ${token}` } }))

  const boundary = 'x-boundary'
  const part = (name: string, value: string, filename?: string) =>
    `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${filename === undefined ? '' : `; filename="${filename}"`}\r\n\r\n${value}\r\n`
  const upload = (body: string) => app.inject({
    method: 'POST', url: '/v1/ai/background-removal', headers: { authorization: `Bearer ${token}`, 'content-type': `multipart/form-data; boundary=${boundary}` }, payload: body
  })
  await expect('many files', 400, upload(Array.from({ length: 50 }, (_, i) => part('image', 'x', `${i}.png`)).join('') + `--${boundary}--\r\n`))
  await expect('many fields', 400, upload(Array.from({ length: 50 }, (_, i) => part(`f${i}`, 'x')).join('') + `--${boundary}--\r\n`))
  await expect('a field over its size limit', 400, upload(part('output', 'x'.repeat(5000)) + `--${boundary}--\r\n`))
  await expect('no closing boundary', 400, upload(part('image', 'x', 'a.png')))
  await expect('an empty multipart body', 400, upload(`--${boundary}--\r\n`))
  await expect('a part header without a name', 400, upload(`--${boundary}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--${boundary}--\r\n`))
  await expect('multipart without a boundary', 400, app.inject({
    method: 'POST', url: '/v1/ai/background-removal', headers: { authorization: `Bearer ${token}`, 'content-type': 'multipart/form-data' }, payload: 'x'
  }))

  const webhook = (payload: string | Buffer, contentType = 'application/json') =>
    app.inject({ method: 'POST', url: '/v1/webhooks', headers: { authorization: `Bearer ${token}`, 'content-type': contentType }, payload })
  await expect('a webhook body of binary bytes', 400, webhook(Buffer.from([0, 1, 2, 0xff, 0xfe])))
  await expect('a huge webhook body', 413, webhook(JSON.stringify({ url: 'https://8.8.8.8/h', events: ['ping'], description: 'x'.repeat(300 * 1024) })))
  await expect('a webhook url of 3,000 characters', 400, webhook(JSON.stringify({ url: `https://8.8.8.8/${'a'.repeat(3000)}`, events: ['ping'] })))
  await expect('a webhook to cloud metadata', 400, webhook(JSON.stringify({ url: 'https://169.254.169.254/latest/meta-data/', events: ['ping'] })))
  await expect('a webhook with an unknown event', 400, webhook(JSON.stringify({ url: 'https://8.8.8.8/h', events: ['staging.completed', 'everything'] })))
  await expect('a file link with a huge expiry', 400, app.inject({ url: `/v1/ai/files/3f2b8c1e-9d4a-4e5b-8f6a-2c1d0e9b7a65?expires=${'9'.repeat(40)}&signature=${'A'.repeat(43)}` }))
  await expect('a tampered file link', 401, app.inject({ url: `/v1/ai/files/3f2b8c1e-9d4a-4e5b-8f6a-2c1d0e9b7a65?expires=99999999999&signature=${'A'.repeat(43)}` }))
  await expect('a file link with a signature and a token', 401, app.inject({ url: `/v1/ai/files/3f2b8c1e-9d4a-4e5b-8f6a-2c1d0e9b7a65?expires=1&signature=${'A'.repeat(43)}`, headers: { authorization: `Bearer ${token}` } }))
  await expect('a malformed file URL', 400, app.inject({ url: '/v1/ai/files/%E0%A4%A' }))
  await expect('a data deletion without a token', 401, app.inject({ method: 'DELETE', url: '/v1/ai/me/data' }))

  t.same(seen.fiveHundreds, [], 'no 5xx, and every refusal in the envelope')
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200, 'the service stays ready')
})
