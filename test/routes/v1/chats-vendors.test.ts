import type { FastifyInstance } from 'fastify'
import { http, HttpResponse } from 'msw'
import t from 'tap'
import { CHAT_SYSTEM_PROMPT } from '../../../plugins/chats.js'
import { FEATURES } from '../../../plugins/features.js'
import { VENDORS } from '../../../providers/vendors.js'
import type { VendorId } from '../../../schemas/models.js'
import { anthropicEvents, anthropicMessage, anthropicStream, ANTHROPIC_URL } from '../../anthropic-fake.js'
import { build, dumpAllTables, mint, userWithKey } from '../../helper.js'
import { interceptNetwork } from '../../network.js'
import { MODEL_OF, VENDOR_ENV, VENDOR_KEYS } from '../../vendor-keys.js'
import { completion, sseResponse, streamChunks } from '../../openai-fake.js'

// The declared-fields check, vendor by vendor: a chat sent to a model of each of the six vendors, answered in
// each vendor's documented shape, in JSON and as a stream. What leaves is the declared fields (the message and
// the history) and what the disclosure says the server adds — never the title, the contextRef, an id or a key.

const KEYS = VENDOR_KEYS
const ENV = VENDOR_ENV
const COMPATIBLE = ['qwen', 'deepseek', 'xai', 'gemini'] as const

/** The body keys each vendor gets (the stream flag included; streaming Chat Completions add stream_options). */
const EXPECTED_KEYS: Record<VendorId, string[]> = {
  openai: ['max_completion_tokens', 'messages', 'model', 'safety_identifier', 'store', 'stream'],
  anthropic: ['max_tokens', 'messages', 'metadata', 'model', 'stream', 'system'],
  qwen: ['max_tokens', 'messages', 'model', 'stream'],
  deepseek: ['max_tokens', 'messages', 'model', 'stream'],
  xai: ['max_tokens', 'messages', 'model', 'stream', 'user'],
  gemini: ['max_tokens', 'messages', 'model', 'stream']
}

const call = (app: FastifyInstance, token: string, url: string, payload: Record<string, unknown>) =>
  app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}` }, payload })

t.test('every vendor gets the declared fields only, in its own API\'s shape, in JSON and streamed', async (t) => {
  const handlers = [
    http.post(ANTHROPIC_URL, async ({ request }) => {
      const body = await request.clone().json() as { stream?: boolean }
      return body.stream === true
        ? anthropicStream(anthropicEvents(['from ', 'anthropic'], { usage: { input: 40, output: 2 } }))
        : HttpResponse.json(anthropicMessage('from anthropic', { usage: { input_tokens: 40, output_tokens: 2 } }))
    }),
    ...(['openai', ...COMPATIBLE] as const).map((vendor) => http.post(`${VENDORS[vendor].defaultBaseUrl}/chat/completions`, async ({ request }) => {
      const body = await request.clone().json() as { stream?: boolean }
      return body.stream === true
        ? sseResponse(streamChunks(['from ', vendor], [], { prompt_tokens: 40, completion_tokens: 2 }))
        : HttpResponse.json(completion(`from ${vendor}`, [], { prompt_tokens: 40, completion_tokens: 2 }))
    }))
  ]
  const { seen } = interceptNetwork(t, ...handlers)
  const { app, logs, store } = await build(t, { env: ENV })
  const { userId, key } = await userWithKey(app, { plan: 'pro', mode: 'live' })
  const { token } = await mint(app, key)
  const userHash = app.hash.user(userId)
  t.same(FEATURES.chat.sends.map((s) => s.field), ['content', 'history', 'tools'], 'the declared fields (tools: chats created with them, tested in chats-tools.test.ts)')

  for (const vendor of Object.keys(MODEL_OF) as VendorId[]) {
    const model = MODEL_OF[vendor]
    const created = await app.inject({ method: 'POST', url: '/v1/chats', headers: { authorization: `Bearer ${token}` }, payload: { title: `CANARY-TITLE-${vendor}`, contextRef: `CANARY-REF-${vendor}` } })
    const chat = created.json() as { id: string }
    const before = seen.length
    const first = await call(app, token, `/v1/chats/${chat.id}/messages`, { content: `CANARY-FIRST-${vendor}`, model })
    t.equal(first.statusCode, 201, `${vendor}: JSON`)
    t.match(first.json(), { content: `from ${vendor}`, model, usage: { inputTokens: 40, outputTokens: 2 } })
    t.equal(first.headers['ai-provider'], vendor)
    const second = await call(app, token, `/v1/chats/${chat.id}/stream`, { content: `CANARY-SECOND-${vendor}`, model })
    t.equal(second.statusCode, 200, `${vendor}: stream`)
    t.match(second.body, /event: done/)
    t.equal(second.headers['ai-provider'], vendor)

    const requests = seen.slice(before)
    t.equal(requests.length, 2, `${vendor}: one request per message, nowhere else`)
    for (const [i, request] of requests.entries()) {
      const streamed = i === 1
      t.equal(request.headers.get('authorization'), `Bearer ${KEYS[vendor]}`, `${vendor}: its own key (the Anthropic SDK sends it as a bearer token too)`)
      const body = await request.json() as Record<string, unknown>
      const { stream_options: streamOptions, ...rest } = body
      t.same(Object.keys(rest).sort(), EXPECTED_KEYS[vendor], `${vendor}: the body keys (${streamed ? 'stream' : 'JSON'})`)
      t.equal(body.stream, streamed)
      if (vendor === 'anthropic') t.equal(streamOptions, undefined)
      else t.same(streamOptions, streamed ? { include_usage: true } : undefined, `${vendor}: usage asked for on a stream`)
      t.equal(body.model, model, 'the catalog model is the vendor\'s model name')

      // The user hash only where the vendor documents a field for it.
      const userField = VENDORS[vendor].userField
      if (userField === 'metadata.user_id') t.same(body.metadata, { user_id: userHash })
      else if (userField !== null) t.equal(body[userField], userHash)

      const turns = [{ role: 'user', content: `CANARY-FIRST-${vendor}` }, ...(streamed ? [{ role: 'assistant', content: `from ${vendor}` }, { role: 'user', content: `CANARY-SECOND-${vendor}` }] : [])]
      if (vendor === 'anthropic') {
        t.equal(body.system, CHAT_SYSTEM_PROMPT, 'the fixed system prompt')
        t.same(body.messages, turns, 'the history, then the new message')
      } else {
        t.same(body.messages, [{ role: 'system', content: CHAT_SYSTEM_PROMPT }, ...turns], 'the system prompt, the history, then the new message')
      }
      const text = JSON.stringify(body)
      for (const secret of [userId, token, key, chat.id, `CANARY-TITLE-${vendor}`, `CANARY-REF-${vendor}`, ...Object.values(KEYS)]) {
        t.notOk(text.includes(secret), `${vendor}: no ${secret.slice(0, 12)}… in the body`)
      }
    }
  }

  const dump = await dumpAllTables(store)
  for (const vendor of Object.keys(MODEL_OF)) {
    for (const canary of [`CANARY-FIRST-${vendor}`, `CANARY-SECOND-${vendor}`, `CANARY-TITLE-${vendor}`, `CANARY-REF-${vendor}`]) {
      t.notOk(logs.text.includes(canary), `${canary} is in no log line`)
      t.notOk(dump.includes(canary), `${canary} is in no column of any table`)
    }
  }
  for (const secret of Object.values(KEYS)) t.notOk(logs.text.includes(secret) || dump.includes(secret), 'no vendor key logged or stored')
})
