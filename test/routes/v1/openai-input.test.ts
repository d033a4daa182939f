import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { build, dumpAllTables, mint, userWithKey } from '../../helper.js'

// Bad input on the OpenAI-compatible surface: each an OpenAI-shaped 4xx naming the field, never a 5xx, and
// nothing reserved, charged or logged of the content. Test mode: no vendor is ever called.

async function setup (t: Test) {
  const built = await build(t)
  const { userId, key } = await userWithKey(built.app, { plan: 'pro', mode: 'test' })
  return { ...built, userId, token: (await mint(built.app, key)).token }
}

const post = (app: FastifyInstance, token: string, payload: unknown, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url: '/v1/openai/chat/completions', headers: { authorization: `Bearer ${token}`, ...headers }, payload: payload as string })

const user = (content: unknown = 'hi') => ({ role: 'user', content })
const ask = (extra: Record<string, unknown> = {}, messages: unknown[] = [user()]) => ({ model: 'gpt-4o-mini', messages, ...extra })
const weather = { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }
const called = (id = 'call_1', args = '{"city":"Oslo"}') => ({ role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name: 'get_weather', arguments: args } }] })

t.test('bad requests: a 400 in OpenAI\'s shape naming the field, with our code', async (t) => {
  const { app, token, userId, logs, store } = await setup(t)
  const cases: Array<[string, unknown, string | null, RegExp]> = [
    ['an unknown model', ask({ model: 'gpt-9' }), 'model', /not a model of the catalog/],
    ['no messages', ask({}, []), 'messages', /fewer than 1/],
    ['a role that does not exist', ask({}, [{ role: 'wizard', content: 'x' }]), 'messages.0.role', /must be one of system, developer, user, assistant, tool/],
    ['a message that is not an object', ask({}, ['hello']), 'messages.0', /must be object/],
    ['a field messages do not have', ask({}, [{ role: 'user', content: 'x', name: 'bob' }]), 'messages.0.name', /is not a field of this request/],
    ['an image part', ask({}, [user([{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }])]), 'messages.0.content.0.type', /images, audio and files are not supported/],
    ['a text part without text', ask({}, [user([{ type: 'text' }])]), 'messages.0.content.0.text', /must be a string/],
    ['an empty user message', ask({}, [user('')]), 'messages.0.content', /non-empty text/],
    ['a system message without content', ask({}, [{ role: 'system' }, user()]), 'messages.0.content', /non-empty text/],
    ['no user message', ask({}, [{ role: 'system', content: 'You are terse.' }]), 'messages', /must contain a user message/],
    ['a tool message first', ask({}, [{ role: 'tool', tool_call_id: 'call_1', content: 'x' }, user()]), 'messages.0.tool_call_id', /answers no open tool call/],
    ['a tool message without its call id', ask({}, [user(), called(), { role: 'tool', content: 'x' }]), 'messages.2.tool_call_id', /is required on a tool message/],
    ['a tool message without content', ask({}, [user(), called(), { role: 'tool', tool_call_id: 'call_1' }]), 'messages.2.content', /is required on a tool message/],
    ['a tool call left unanswered before the next user turn', ask({ tools: [weather] }, [user(), called(), user('and?')]), 'messages.2.role', /tool calls of message 1 must each be answered/],
    ['a tool call left unanswered at the end', ask({ tools: [weather] }, [user(), called()]), 'messages', /tool calls must each be answered/],
    ['tool-call arguments that are not a JSON object', ask({}, [user(), called('call_1', '[1,2]'), { role: 'tool', tool_call_id: 'call_1', content: 'x' }]), 'messages.1.tool_calls.0.function.arguments', /JSON text of an object/],
    ['tool-call arguments that are not JSON', ask({}, [user(), called('call_1', '{city'), { role: 'tool', tool_call_id: 'call_1', content: 'x' }]), 'messages.1.tool_calls.0.function.arguments', /JSON text of an object/],
    ['one call id twice', ask({}, [user(), { ...called(), tool_calls: [...called().tool_calls, ...called().tool_calls] }, { role: 'tool', tool_call_id: 'call_1', content: 'x' }]), 'messages.1.tool_calls.1.id', /is used twice/],
    ['an assistant message with neither content nor calls', ask({}, [user(), { role: 'assistant' }, user()]), 'messages.1.content', /required unless the message has tool_calls/],
    ['tool calls on a user message', ask({}, [{ ...user(), tool_calls: called().tool_calls }]), 'messages.0.tool_calls', /only assistant messages/],
    ['a call id on a user message', ask({}, [{ ...user(), tool_call_id: 'call_1' }]), 'messages.0.tool_call_id', /only tool messages/],
    ['a tool schema that is not a JSON Schema', ask({ tools: [{ type: 'function', function: { name: 'x', parameters: { type: 'objekt' } } }] }), 'tools.0.function.parameters', /is not a JSON Schema \(draft-07\): a keyword must be equal to one of the allowed values/],
    ['a tool schema that is not about an object', ask({ tools: [{ type: 'function', function: { name: 'x', parameters: { type: 'string' } } }] }), 'tools.0.function.parameters.type', /must be "object"/],
    ['a tool schema too large', ask({ tools: [{ type: 'function', function: { name: 'x', parameters: { type: 'object', description: 'd'.repeat(16_001) } } }] }), 'tools.0.function.parameters', /at most 16,000 characters/],
    ['two tools of one name', ask({ tools: [weather, weather] }), 'tools.1.function.name', /used by another tool/],
    ['a tool name with spaces', ask({ tools: [{ type: 'function', function: { name: 'get weather' } }] }), 'tools.0.function.name', /must match pattern/],
    ['tool_choice without tools', ask({ tool_choice: 'required' }), 'tool_choice', /needs tools/],
    ['tool_choice naming another tool', ask({ tools: [weather], tool_choice: { type: 'function', function: { name: 'other' } } }), 'tool_choice.function.name', /not one of the tools/],
    ['a json_schema format without a schema', ask({ response_format: { type: 'json_schema', json_schema: { name: 'x' } } }), 'response_format.json_schema.schema', /is required/],
    ['a json_schema format whose schema is not one', ask({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 7 } } } }), 'response_format.json_schema.schema', /is not a JSON Schema/],
    ['json_object', ask({ response_format: { type: 'json_object' } }), 'response_format', /./],
    ['both reply limits', ask({ max_tokens: 10, max_completion_tokens: 10 }), 'max_completion_tokens', /not both/],
    ['a reply limit above the model\'s', ask({ max_tokens: 16_385 }), 'max_tokens', /at most 16384 for gpt-4o-mini/],
    ['a zero reply limit', ask({ max_tokens: 0 }), 'max_tokens', /must be >= 1/],
    ['stream_options without stream', ask({ stream_options: { include_usage: true } }), 'stream_options', /only allowed with stream: true/],
    ['a temperature above 2', ask({ temperature: 2.5 }), 'temperature', /must be <= 2/],
    ['a temperature above 1 on Anthropic', ask({ model: 'claude-haiku-4-5', temperature: 1.5 }), 'temperature', /at most 1 for claude-haiku-4-5/],
    ['json_schema on Anthropic', ask({ model: 'claude-haiku-4-5', response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } } }), 'response_format', /not offered for claude-haiku-4-5/],
    ['tools on a model that cannot call them', ask({ model: 'deepseek-reasoner', tools: [weather] }), 'tools', /deepseek-reasoner cannot call tools/],
    ['five stop sequences', ask({ stop: ['a', 'b', 'c', 'd', 'e'] }), 'stop', /./],
    ['n above 1', ask({ n: 2 }), 'n', /only 1 is supported/],
    ['log probabilities', ask({ logprobs: true, top_logprobs: 2 }), 'logprobs', /log probabilities are not offered/],
    ['audio', ask({ modalities: ['text', 'audio'], audio: { voice: 'alloy', format: 'wav' } }), 'audio', /audio is not supported/],
    ['a user id of the caller', ask({ user: 'someone@example.com' }), 'user', /set by the service/],
    ['top_p', ask({ top_p: 0.5 }), 'top_p', /use temperature/],
    ['the deprecated functions', ask({ functions: [] }), 'functions', /send tools/],
    ['a field OpenAI does not have either', ask({ colour: 'blue' }), 'colour', /is not a field of this request/],
    ['messages over 400,000 characters in all', ask({}, [user('x'.repeat(200_001)), { role: 'assistant', content: 'y'.repeat(200_001) }, user()]), 'messages', /at most 400,000 characters/],
    ['more than 256 messages', ask({}, Array.from({ length: 257 }, () => user())), 'messages', /more than 256 items/],
    ['a prompt over the model\'s context', { model: 'qwen-max', messages: [user('word '.repeat(79_000))] }, 'messages', /exceed the context of qwen-max \(32,768 tokens\)/]
  ]
  for (const [what, body, param, message] of cases) {
    const res = await post(app, token, body)
    t.equal(res.statusCode, 400, what)
    const { error } = res.json<{ error: { type: string, code: string, param: string | null, message: string } }>()
    t.match(error, { type: 'invalid_request_error', code: 'VALIDATION_ERROR', param }, `${what}: the field`)
    t.match(error.message, message, `${what}: the reason`)
    t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'the request id comes along')
  }

  const hidden = await post(app, token, ask({ tools: [{ type: 'function', function: { name: 'x', parameters: { type: 'object', properties: { 'CANARY-PROP': { type: 7 } } } } }] }))
  t.equal(hidden.statusCode, 400)
  t.notMatch(hidden.body, /CANARY-PROP/, 'the error does not quote the caller\'s schema')

  const fine = await post(app, token, ask({ tools: [{ type: 'function', function: { name: 'noop' } }], n: 1, logprobs: false, modalities: ['text'], stream: false, stop: 'END', response_format: { type: 'text' }, temperature: null, user: null }))
  t.equal(fine.statusCode, 200, 'the neutral values of refused fields pass')

  const rows = (await app.store.query('SELECT * FROM usage_ledger WHERE user_id = $1', [userId])).rows
  t.equal(rows.length, 1, 'only the good call was metered')
  t.notOk(logs.text.includes('someone@example.com'), 'a refused field\'s value is not logged')
  t.notOk((await dumpAllTables(store)).includes('someone@example.com'))
})

t.test('bodies, types and routes: 413, 415, 404 and 401 in OpenAI\'s shape', async (t) => {
  const { app, token } = await setup(t)
  const big = await post(app, token, JSON.stringify(ask({}, [user('x'.repeat(1024 * 1024))])), { 'content-type': 'application/json' })
  t.equal(big.statusCode, 413)
  t.match(big.json(), { error: { type: 'invalid_request_error', code: 'PAYLOAD_TOO_LARGE', param: null } })

  const text = await post(app, token, '<hello/>', { 'content-type': 'application/xml' })
  t.equal(text.statusCode, 415)
  t.match(text.json(), { error: { type: 'invalid_request_error', code: 'UNSUPPORTED_MEDIA_TYPE' } })

  const broken = await post(app, token, '{"model":', { 'content-type': 'application/json' })
  t.equal(broken.statusCode, 400)
  t.match(broken.json(), { error: { code: 'VALIDATION_ERROR', param: null } })

  const notArray = await post(app, token, [1, 2])
  t.match(notArray.json(), { error: { code: 'VALIDATION_ERROR', param: null, message: /body must be object/ } }, 'a body that is not an object names the body')

  const missing = await app.inject({ url: '/v1/openai/embeddings', headers: { authorization: `Bearer ${token}` } })
  t.equal(missing.statusCode, 404)
  t.match(missing.json(), { error: { type: 'not_found_error', code: 'NOT_FOUND', message: /POST \/v1\/openai\/chat\/completions and GET \/v1\/openai\/models/ } })

  const anonymous = await app.inject({ url: '/v1/openai/models' })
  t.equal(anonymous.statusCode, 401)
  t.match(anonymous.json(), { error: { type: 'authentication_error', code: 'UNAUTHENTICATED' } })

  const several = await post(app, token, ask({}, Array.from({ length: 7 }, () => user(''))))
  t.match(several.json<{ error: { message: string } }>().error.message, /\(and 2 more\)\.$/, 'at most five fields in the message, the rest counted')
})
