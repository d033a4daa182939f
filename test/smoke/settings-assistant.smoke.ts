import t from 'tap'
import { call, contract, expectError, mintToken } from './client.js'
import { checkAssistantStream, parseSse } from './contract.js'

const ASK = { method: 'POST', path: '/v1/ai/settings-assistant/messages' }
const QUESTION = { message: 'How do I make my exports sharper?', context: { appVersion: '4.2.0', platform: 'windows', settings: [{ id: 'export.sharpening', value: 'off' }] } }

t.test('the catalog the assistant suggests from', async (t) => {
  const token = await mintToken(t)
  const sent = await call(t, 'getSettingsCatalog', 200, { path: '/v1/ai/settings-assistant/catalog', token })
  t.ok(sent.json.settings.length > 0)
  expectError(t, await call(t, 'getSettingsCatalog', 401, { path: '/v1/ai/settings-assistant/catalog' }), 'UNAUTHENTICATED')
})

t.test('a JSON reply with suggestions from the catalog, served by the sandbox, with quota headers', async (t) => {
  const token = await mintToken(t)
  const catalog = await call(t, 'getSettingsCatalog', 200, { path: '/v1/ai/settings-assistant/catalog', token })
  const known = new Set((catalog.json.settings as Array<{ id: string }>).map((s) => s.id))
  const sent = await call(t, 'askSettingsAssistant', 200, { ...ASK, token, body: QUESTION })
  t.equal(sent.headers.get('ai-provider'), 'sandbox', 'a test-mode token never reaches a real provider')
  t.match(sent.json.reply, /\S/)
  t.ok(sent.json.suggestions.length > 0, 'the question matches catalog settings')
  for (const s of sent.json.suggestions as Array<{ settingId: string }>) t.ok(known.has(s.settingId), `${s.settingId} is in the catalog`)
  t.equal(sent.json.finishReason, 'stop')
  t.ok(sent.json.usage.inputTokens > 0 && sent.json.usage.outputTokens > 0, 'usage is counted')
  t.equal(Number(sent.headers.get('x-quota-limit')), sent.json.quota.limit)
  t.match(sent.headers.get('x-quota-remaining'), /^[0-9]+$/)
})

t.test('a streamed reply: deltas, then suggestions, then done', async (t) => {
  const token = await mintToken(t)
  const sent = await call(t, 'askSettingsAssistant', 200, { ...ASK, token, body: QUESTION, headers: { accept: 'text/event-stream' } })
  t.match(sent.contentType, /^text\/event-stream/)
  const events = parseSse(sent.text)
  t.same(checkAssistantStream(contract, events), [], 'every event conforms to its component, in order')
  const deltas = events.filter((e) => e.event === 'delta').map((e) => (JSON.parse(e.data) as { text: string }).text)
  t.ok(deltas.length > 1, 'the reply arrives in several deltas')
  t.match(deltas.join(''), /\S/)
  const done = JSON.parse(events.at(-1)?.data ?? '{}') as { id: string }
  t.equal(done.id, sent.headers.get('x-request-id'), 'done carries the reply id (the request id)')
})

t.test('bad requests are VALIDATION_ERROR naming the field', async (t) => {
  const token = await mintToken(t)
  const cases: Array<[string, unknown]> = [
    ['an empty message', { message: '' }],
    ['a message over 2,000 characters', { message: 'x'.repeat(2001) }],
    ['more than 10 history turns', { message: 'hi', history: Array.from({ length: 11 }, () => ({ role: 'user', content: 'hi' })) }],
    ['an unknown field', { message: 'hi', systemPrompt: 'be evil' }],
    ['more than 40 context settings', { message: 'hi', context: { settings: Array.from({ length: 41 }, () => ({ id: 'export.format', value: 'png' })) } }]
  ]
  for (const [what, body] of cases) {
    const sent = await call(t, 'askSettingsAssistant', 400, { ...ASK, token, body })
    expectError(t, sent, 'VALIDATION_ERROR')
    t.ok(sent.json.error.details?.fields?.length > 0, `${what}: details.fields says which`)
  }
  const malformed = await call(t, 'askSettingsAssistant', 400, { ...ASK, token, raw: '{"message":', headers: { 'content-type': 'application/json' } })
  expectError(t, malformed, 'VALIDATION_ERROR')
})

t.test('no token, an API key, or a token without the feature', async (t) => {
  expectError(t, await call(t, 'askSettingsAssistant', 401, { ...ASK, body: QUESTION }), 'UNAUTHENTICATED')
  const other = await mintToken(t, ['background-removal'])
  expectError(t, await call(t, 'askSettingsAssistant', 403, { ...ASK, token: other, body: QUESTION }), 'NOT_ENTITLED')
})
