import { createParser } from 'eventsource-parser'
import { http, HttpResponse } from 'msw'
import t from 'tap'
import { ConfigError } from '../../../../plugins/config.js'
import { assistantModelProblems, loadModels } from '../../../../plugins/models.js'
import { anthropicEvents, anthropicMessage, anthropicStream, ANTHROPIC_URL } from '../../../anthropic-fake.js'
import { build, mint, userWithKey } from '../../../helper.js'
import { interceptNetwork } from '../../../network.js'
import { OPENAI_URL } from '../../../openai-fake.js'

const ENV = { SETTINGS_ASSISTANT_MODEL: 'claude-haiku-4-5', ANTHROPIC_API_KEY: 'sk-ant-canary-0123456789' }
const suggestion = { settingId: 'export.sharpening', value: 'standard', reason: 'Sharper exports.' }
const unknown = { settingId: 'export.magicSharpness', value: true, reason: 'Unknown setting.' }

t.test('SETTINGS_ASSISTANT_MODEL: the assistant runs on a catalog model of another vendor, suggestions through its tool use', async (t) => {
  const { seen } = interceptNetwork(t,
    http.post(ANTHROPIC_URL, async ({ request }) => {
      const body = await request.json() as { stream?: boolean }
      const tool = { name: 'suggest_settings', input: { suggestions: [suggestion, unknown] } }
      return body.stream === true
        ? anthropicStream(anthropicEvents(['Turn on ', 'sharpening.'], { tool, usage: { input: 700, output: 50 } }))
        : HttpResponse.json(anthropicMessage('Turn on sharpening.', { tool, usage: { input_tokens: 700, output_tokens: 50 } }))
    }),
    http.post(OPENAI_URL, () => { throw new Error('OpenAI is not the assistant\'s vendor here') })
  )
  const { app } = await build(t, { env: ENV })
  const { userId, key } = await userWithKey(app, { plan: 'pro', mode: 'live' })
  const { token } = await mint(app, key)
  const ask = (stream: boolean) => app.inject({
    method: 'POST',
    url: '/v1/ai/settings-assistant/messages',
    headers: { authorization: `Bearer ${token}`, ...(stream ? { accept: 'text/event-stream' } : {}) },
    payload: { message: 'How do I make my exports sharper?' }
  })
  const json = await ask(false)
  t.equal(json.statusCode, 200, json.body)
  t.equal(json.headers['ai-provider'], 'anthropic')
  t.match(json.json(), { reply: 'Turn on sharpening.', suggestions: [suggestion], usage: { inputTokens: 700, outputTokens: 50 } })
  t.equal((json.json() as { suggestions: unknown[] }).suggestions.length, 1, 'a setting outside the catalog is dropped')

  const streamed = await ask(true)
  const events: Array<{ event?: string, data: string }> = []
  createParser({ onEvent: (e) => events.push(e) }).feed(streamed.body)
  t.same(events.map((e) => e.event), ['delta', 'delta', 'suggestion', 'done'])

  const body = await seen[0]?.json() as Record<string, unknown>
  t.match(body, { model: 'claude-haiku-4-5', metadata: { user_id: app.hash.user(userId) }, tools: [{ name: 'suggest_settings' }] })
  t.match(body.system, /Settings Assistant|settings/i, 'the system prompt is the service\'s')
  const { rows } = await app.store.query<{ provider: string, model: string }>('SELECT provider, model FROM usage_ledger WHERE user_id = $1 ORDER BY id', [userId])
  t.same(rows, [{ provider: 'anthropic', model: 'claude-haiku-4-5' }, { provider: 'anthropic', model: 'claude-haiku-4-5' }])

  const manifest = (await app.inject({ url: '/v1/ai/features' })).json() as { features: Array<{ id: string, providers: Array<{ id: string, mode: string, configured: boolean }> }> }
  t.match(manifest.features.find((f) => f.id === 'settings-assistant')?.providers, [{ id: 'anthropic', mode: 'live', configured: true }, { id: 'sandbox', mode: 'test' }],
    'the disclosure names the vendor the assistant really uses')
})

t.test('a catalog model whose vendor has no key: PROVIDER_NOT_CONFIGURED; a model not in the catalog, or without tools, stops the startup', async (t) => {
  interceptNetwork(t)
  const { app } = await build(t, { env: { SETTINGS_ASSISTANT_MODEL: 'claude-haiku-4-5', OPENAI_API_KEY: 'sk-canary-openai-0123456789' } })
  const { key } = await userWithKey(app, { plan: 'pro', mode: 'live' })
  const { token } = await mint(app, key)
  const res = await app.inject({ method: 'POST', url: '/v1/ai/settings-assistant/messages', headers: { authorization: `Bearer ${token}` }, payload: { message: 'hi' } })
  t.equal(res.statusCode, 503)
  t.match(res.json(), { error: { code: 'PROVIDER_NOT_CONFIGURED', message: /no key for its model's vendor/ } })

  const catalog = loadModels()
  t.same(assistantModelProblems(catalog, undefined), [])
  t.same(assistantModelProblems(catalog, 'gpt-4o-mini'), [])
  t.same(assistantModelProblems(catalog, 'gpt-9'), ['SETTINGS_ASSISTANT_MODEL: "gpt-9" is not a model of the catalog (MODELS_FILE).'])
  const noTools = catalog.map((m) => m.id === 'gpt-4o-mini' ? { ...m, capabilities: ['chat'] } : m)
  t.match(assistantModelProblems(noTools, 'gpt-4o-mini'), [/cannot call tools/])
  await t.rejects(build(t, { env: { SETTINGS_ASSISTANT_MODEL: 'gpt-9' } }), ConfigError)
})
