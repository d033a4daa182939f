import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { build, TEST_SECRETS, userWithKey } from '../helper.js'
import { checkAssistantStream, Contract, parseSse } from './contract.js'
import { settings } from './client.js'

const contract = Contract.committed()
const SMOKE_DIR = new URL('.', import.meta.url)
const SMOKE_FILES = readdirSync(SMOKE_DIR).filter((f) => f.endsWith('.smoke.ts')).sort()

t.test('a response is checked against its operation: status, content type and body shape', async (t) => {
  const minted = { token: 'a.b.c', tokenType: 'Bearer', expiresIn: 900, expiresAt: '2026-11-23T01:41:52.000Z', plan: 'pro', features: ['settings-assistant'], mode: 'test' }
  const { expiresIn, ...withoutExpiresIn } = minted
  t.same(contract.check('createAiToken', 201, 'application/json; charset=utf-8', minted), [])
  t.match(contract.check('createAiToken', 200, 'application/json', minted)[0], /does not document status 200 \(documented: 201, 400, 401, 403, 429, 500, 503\)/)
  t.match(contract.check('createAiToken', 201, 'text/html', minted)[0], /content type text\/html is not documented/)
  t.match(contract.check('createAiToken', 201, '', minted)[0], /content type \(none\) is not documented/)
  t.match(contract.check('createAiToken', 201, 'application/json', withoutExpiresIn)[0], /must have required property 'expiresIn'/)
  t.match(contract.check('createAiToken', 201, 'application/json', { ...minted, extra: 1 })[0], /must NOT have additional properties/)
  t.match(contract.check('createAiToken', 201, 'application/json', { ...minted, expiresIn: String(expiresIn) })[0], /\/expiresIn must be integer/)
  t.match(contract.check('createAiToken', 201, 'application/json', { ...minted, expiresAt: 'tomorrow' })[0], /\/expiresAt must match format "date-time"/)
  t.match(contract.check('createAiToken', 401, 'application/json', { error: { code: 'NO_SUCH_CODE', message: 'x', requestId: 'r' } }).join('\n'), /\/error\/code must be equal to one of the allowed values|\/error\/code must match/)
  t.throws(() => contract.check('noSuchOperation', 200, 'application/json', {}), /no operation noSuchOperation/)
  t.match(contract.checkComponent('NoSuchComponent', {})[0], /no component NoSuchComponent/)
})

t.test('a stream is checked event by event and in order', async (t) => {
  const done = { id: 'r', finishReason: 'stop', usage: { inputTokens: 1, outputTokens: 2, costMicroUsd: 0, costCents: 0 }, quota: { limit: 10, used: 3, remaining: 7, resetsAt: '2026-12-01T00:00:00.000Z' } }
  const suggestion = { settingId: 'export.format', value: 'png', reason: 'Lossless.' }
  const frame = (event: string, data: unknown) => `event: ${event}\r\ndata: ${typeof data === 'string' ? data : JSON.stringify(data)}\r\n\r\n`
  const good = parseSse(frame('delta', { text: 'Hi' }) + ': a comment\n\n' + frame('suggestion', suggestion) + frame('done', done))
  t.same(good.map((e) => e.event), ['delta', 'suggestion', 'done'])
  t.same(checkAssistantStream(contract, good), [])
  const failed = parseSse(frame('delta', { text: 'Hi' }) + frame('error', { error: { code: 'PROVIDER_ERROR', message: 'x', requestId: 'r' } }))
  t.same(checkAssistantStream(contract, failed), [], 'a stream may end with an error event')

  const problems = (text: string) => checkAssistantStream(contract, parseSse(text)).join('\n')
  t.match(problems(frame('delta', { text: 'Hi' })), /does not end with a done or error event/)
  t.match(problems(frame('suggestion', suggestion) + frame('delta', { text: 'Hi' }) + frame('done', done)), /event 1: delta after suggestion/)
  t.match(problems(frame('done', done) + frame('done', done)), /event 0: done is not the last event/)
  t.match(problems(frame('thinking', {}) + frame('done', done)), /unknown event type thinking/)
  t.match(problems(frame('delta', 'not json') + frame('done', done)), /event 0 \(delta\): data is not JSON/)
  t.match(problems(frame('delta', { text: 1 }) + frame('done', done)), /event 0 \(delta\): AssistantDelta: \/text must be string/)
  t.match(problems('data: {}\n\n'), /unknown event type message/, 'an event without a type is a plain message')
})

t.test('every streamed answer is checked against the events the contract names (x-events)', async (t) => {
  const frame = (event: string, data: unknown) => `event: ${event}\ndata: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`
  const usage = { inputTokens: 1, outputTokens: 2, totalTokens: 3, costMicroUsd: 10, costCents: 0 }
  const done = { messageId: 'msg_0000000000000000', finishReason: 'stop', usage, costCents: 0, model: 'gpt-4.1-mini' }
  const chat = (text: string) => contract.check('streamChatMessage', 200, 'text/event-stream', text)
  t.same(chat(frame('delta', { text: 'Hi' }) + frame('tool', { name: 'list_calendar_events' }) + frame('usage', { inputTokens: 1, outputTokens: 2 }) + frame('done', done)), [])
  t.match(chat(frame('thinking', {})).join('\n'), /event 0: thinking is not an event of the contract \(delta, tool, suggestion, usage, done, error\)/)
  t.match(chat(frame('delta', 'not json')).join('\n'), /event 0 \(delta\): data is not JSON/)
  t.match(chat(frame('done', { ...done, costCents: -1 })).join('\n'), /event 0 \(done\): ChatStreamDone: \/costCents must be >= 0/)
  const chunk = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4.1-mini', choices: [{ index: 0, delta: { content: 'Hi' }, logprobs: null, finish_reason: null }] }
  const openai = (text: string) => contract.check('openaiCreateChatCompletion', 200, 'text/event-stream', text)
  t.same(openai(`data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`), [], 'chunks, then [DONE]')
  t.same(openai(`data: ${JSON.stringify({ error: { message: 'x', type: 'server_error', param: null, code: 'PROVIDER_ERROR' } })}\n\n`), [], 'an error in OpenAI\'s shape')
  t.match(openai(`data: ${JSON.stringify({ ...chunk, object: 'chat.completion' })}\n\n`).join('\n'), /OpenAIChatCompletionChunk: \/object/)
  t.equal(contract.streamEvents('createAiToken'), undefined, 'an operation that streams nothing')
})

t.test('smoke settings: a deployment address and a test-mode key are required', async (t) => {
  t.throws(() => settings({}), /BASE_URL must be the deployment's address.*SMOKE_API_KEY must be a test-mode key/)
  t.throws(() => settings({ BASE_URL: 'http://127.0.0.1:3000', SMOKE_API_KEY: 'pak_live_abc' }), /SMOKE_API_KEY must be a test-mode key/)
  t.same(settings({ BASE_URL: 'http://127.0.0.1:3000/', SMOKE_API_KEY: 'pak_test_abc', SMOKE_ADMIN_TOKEN: '' }),
    { baseUrl: 'http://127.0.0.1:3000', apiKey: 'pak_test_abc', adminToken: undefined })
})

/** Serves the app over real HTTP and runs smoke files against it as QA would, each a process of its own. */
async function runSmoke (t: Test, app: FastifyInstance, files: string[], adminToken?: string) {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { key } = await userWithKey(app, { mode: 'test' })
  const env = {
    ...process.env,
    BASE_URL: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`,
    SMOKE_API_KEY: key,
    SMOKE_ADMIN_TOKEN: adminToken ?? ''
  }
  const results: Array<{ file: string, code: number | null, output: string }> = []
  for (const file of files) {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(new URL(file, SMOKE_DIR))], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
    results.push({ file, code, output })
  }
  t.comment(results.map((r) => `${r.file}: exit ${String(r.code)}`).join(', '))
  return results
}

t.test('the smoke suite passes against the service over HTTP, admin API and built-in accounts included', async (t) => {
  const { app } = await build(t, { env: { LOCAL_ACCOUNTS: 'on' } })
  t.same(SMOKE_FILES, ['accounts.smoke.ts', 'admin.smoke.ts', 'background-removal.smoke.ts', 'chats.smoke.ts', 'client.smoke.ts', 'health.smoke.ts', 'openai.smoke.ts', 'platform.smoke.ts', 'productivity.smoke.ts', 'scans.smoke.ts', 'settings-assistant.smoke.ts', 'staging.smoke.ts', 'tokens.smoke.ts'])
  for (const { file, code, output } of await runSmoke(t, app, SMOKE_FILES, TEST_SECRETS.ADMIN_TOKEN)) {
    t.equal(code, 0, `${file} passes`)
    if (code !== 0) t.comment(output)
    t.notMatch(output, /# SKIP|# skip/, `${file} skips nothing when the admin token is given`)
  }
})

t.test('the smoke suite fails when an endpoint\'s status or schema changes', async (t) => {
  const { app } = await build(t, {
    register: (app) => {
      // Two contract changes a deployment could ship by mistake: a status and a field.
      app.addHook('onSend', async (request, reply, payload) => {
        if (request.routeOptions.url === '/v1/ai/tokens' && reply.statusCode === 201) reply.code(200)
        if (request.routeOptions.url === '/health/ready' && typeof payload === 'string') {
          const body = JSON.parse(payload) as Record<string, unknown>
          delete body.checks
          return JSON.stringify(body)
        }
        return payload
      })
    }
  })
  const [tokens, health] = await runSmoke(t, app, ['tokens.smoke.ts', 'health.smoke.ts'])
  t.not(tokens?.code, 0, 'tokens.smoke.ts fails')
  t.match(tokens?.output, /not ok \d+ - POST \/v1\/ai\/tokens answers 201/)
  t.match(tokens?.output, /not ok \d+ - POST \/v1\/ai\/tokens conforms to the contract \(createAiToken 200\)/)
  t.not(health?.code, 0, 'health.smoke.ts fails')
  t.match(health?.output, /not ok \d+ - GET \/health\/ready conforms \(getHealthReady 200\)/, 'through the client too')
})
