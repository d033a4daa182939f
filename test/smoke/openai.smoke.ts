import OpenAI from 'openai'
import t from 'tap'
import { call, mintToken, settings } from './client.js'

// The OpenAI-compatible surface through the official openai client, as an app developer would use it; the JSON
// answers are also held against the contract. The smoke key's plan must include openai-compatible (pro and team do).

const COMPLETIONS = { method: 'POST', path: '/v1/openai/chat/completions' }

t.test('OpenAI-compatible: models, a completion (JSON, streamed with usage, with a tool call) and errors in OpenAI\'s shape', async (t) => {
  const token = await mintToken(t)
  const client = new OpenAI({ apiKey: token, baseURL: `${settings().baseUrl}/v1/openai`, maxRetries: 0 })
  const listed = await call(t, 'openaiListModels', 200, { path: '/v1/openai/models', token })
  const model = (listed.json.data as Array<{ id: string }>)[0]?.id as string
  t.ok(model, 'at least one model')

  const answer = await call(t, 'openaiCreateChatCompletion', 200, { ...COMPLETIONS, token, body: { model, messages: [{ role: 'user', content: 'Say hello.' }] } })
  t.match(answer.json, { object: 'chat.completion', model, choices: [{ message: { role: 'assistant', content: /\S/ }, finish_reason: 'stop' }] })
  t.ok(answer.json.usage.total_tokens > 0)

  let text = ''
  let usage: OpenAI.CompletionUsage | undefined
  const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Say hello.' }], stream: true, stream_options: { include_usage: true } })
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? ''
    if (chunk.usage != null) usage = chunk.usage
  }
  t.match(text, /\S/, 'streamed text')
  t.ok((usage?.total_tokens ?? 0) > 0, 'usage in the last chunk')

  const tools = [{ type: 'function' as const, function: { name: 'get_time', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]
  const called = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Time in Oslo?' }], tools, tool_choice: 'required' })
  const toolCall = called.choices[0]?.message.tool_calls?.[0]
  t.equal(called.choices[0]?.finish_reason, 'tool_calls')
  const answered = await client.chat.completions.create({
    model,
    tools,
    messages: [
      { role: 'user', content: 'Time in Oslo?' },
      { role: 'assistant', content: null, tool_calls: [toolCall as OpenAI.ChatCompletionMessageFunctionToolCall] },
      { role: 'tool', tool_call_id: (toolCall as { id: string }).id, content: '12:00' }
    ]
  })
  t.match(answered.choices[0]?.message.content, /\S/, 'the tool round is accepted')

  const unknown = await call(t, 'openaiCreateChatCompletion', 400, { ...COMPLETIONS, token, body: { model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] } })
  t.match(unknown.json, { error: { type: 'invalid_request_error', code: 'VALIDATION_ERROR', param: 'model' } })
  const refused = await call(t, 'openaiCreateChatCompletion', 400, { ...COMPLETIONS, token, body: { model, n: 2, messages: [{ role: 'user', content: 'hi' }] } })
  t.match(refused.json, { error: { code: 'VALIDATION_ERROR', param: 'n' } })
  const anonymous = await call(t, 'openaiListModels', 401, { path: '/v1/openai/models' })
  t.match(anonymous.json, { error: { type: 'authentication_error', code: 'UNAUTHENTICATED' } })
  const sdkError = await client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }).then(() => null, (err: unknown) => err)
  t.ok(sdkError instanceof OpenAI.BadRequestError, 'the SDK raises its own error class')
  t.match(sdkError, { code: 'VALIDATION_ERROR', requestID: /\S/ })
})
