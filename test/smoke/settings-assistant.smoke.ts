import t from 'tap'
import { call, expectError, mintToken, refused, smokeClient } from './client.js'

const ASK = { method: 'POST', path: '/v1/ai/settings-assistant/messages' }
const QUESTION = { message: 'How do I make my exports sharper?', context: { appVersion: '4.2.0', platform: 'windows' as const, settings: [{ id: 'export.sharpening', value: 'off' }] } }

t.test('the catalog the assistant suggests from', async (t) => {
  const { data: catalog } = await smokeClient(t, await mintToken(t)).GET('/v1/ai/settings-assistant/catalog')
  t.ok(catalog.settings.length > 0)
  await refused(t, smokeClient(t).GET('/v1/ai/settings-assistant/catalog'), 401, 'UNAUTHENTICATED')
})

t.test('a JSON reply with suggestions from the catalog, served by the sandbox, with quota headers', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const { data: catalog } = await portal.GET('/v1/ai/settings-assistant/catalog')
  const known = new Set(catalog.settings.map((s) => s.id))
  const { data: reply, response } = await portal.POST('/v1/ai/settings-assistant/messages', { body: QUESTION })
  t.equal(response.headers.get('ai-provider'), 'sandbox', 'a test-mode token never reaches a real provider')
  t.match(reply.reply, /\S/)
  t.ok(reply.suggestions.length > 0, 'the question matches catalog settings')
  for (const s of reply.suggestions) t.ok(known.has(s.settingId), `${s.settingId} is in the catalog`)
  t.equal(reply.finishReason, 'stop')
  t.ok(reply.usage.inputTokens > 0 && reply.usage.outputTokens > 0, 'usage is counted')
  t.equal(Number(response.headers.get('x-quota-limit')), reply.quota.limit)
  t.match(response.headers.get('x-quota-remaining'), /^[0-9]+$/)
})

t.test('a streamed reply: deltas, then suggestions, then done (every event held to its component by the client\'s fetch)', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const order: string[] = []
  const deltas: string[] = []
  let doneId = ''
  for await (const event of await portal.streamSettingsAssistant(QUESTION)) {
    order.push(event.event)
    if (event.event === 'delta') deltas.push(event.data.text)
    if (event.event === 'done') doneId = event.data.id
  }
  const stages = order.map((e) => ['delta', 'suggestion', 'done'].indexOf(e))
  t.same(stages, [...stages].sort((a, b) => a - b), 'deltas, then suggestions, then done')
  t.equal(order.at(-1), 'done', 'done closes it')
  t.ok(deltas.length > 1, 'the reply arrives in several deltas')
  t.match(deltas.join(''), /\S/)
  t.match(doneId, /\S/, 'done carries the reply id (the request id)')
})

t.test('bad requests are VALIDATION_ERROR naming the field', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const cases: Array<[string, { message: string, history?: Array<{ role: 'user', content: string }>, context?: { settings: Array<{ id: string, value: string }> } }]> = [
    ['an empty message', { message: '' }],
    ['a message over 2,000 characters', { message: 'x'.repeat(2001) }],
    ['more than 10 history turns', { message: 'hi', history: Array.from({ length: 11 }, () => ({ role: 'user' as const, content: 'hi' })) }],
    ['more than 40 context settings', { message: 'hi', context: { settings: Array.from({ length: 41 }, () => ({ id: 'export.format', value: 'png' })) } }]
  ]
  for (const [what, body] of cases) {
    const error = await refused(t, portal.POST('/v1/ai/settings-assistant/messages', { body }), 400, 'VALIDATION_ERROR')
    t.ok(Array.isArray(error?.details?.fields) && (error?.details?.fields as unknown[]).length > 0, `${what}: details.fields says which`)
  }
  // What a typed client cannot send, raw: a field the contract does not have, and malformed JSON.
  const token = await mintToken(t)
  const unknown = await call(t, 'askSettingsAssistant', 400, { ...ASK, token, body: { message: 'hi', systemPrompt: 'be evil' } })
  expectError(t, unknown, 'VALIDATION_ERROR')
  t.ok(unknown.json.error.details?.fields?.length > 0, 'an unknown field: details.fields says which')
  expectError(t, await call(t, 'askSettingsAssistant', 400, { ...ASK, token, raw: '{"message":', headers: { 'content-type': 'application/json' } }), 'VALIDATION_ERROR')
})

t.test('no token, an API key, or a token without the feature', async (t) => {
  await refused(t, smokeClient(t).POST('/v1/ai/settings-assistant/messages', { body: QUESTION }), 401, 'UNAUTHENTICATED')
  const other = smokeClient(t, await mintToken(t, ['background-removal']))
  await refused(t, other.POST('/v1/ai/settings-assistant/messages', { body: QUESTION }), 403, 'NOT_ENTITLED')
})
