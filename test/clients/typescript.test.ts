import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import sharp from 'sharp'
import { Webhook } from 'standardwebhooks'
import t, { type Test } from 'tap'
import {
  aiTokenSource, createPortalClient, fileFrom, PortalApiError, readEvents, retryAfterSeconds, retryDelayMs, retryingFetch,
  serializeBody, verifyWebhook, WebhookVerificationError, type Fetch
} from '../../clients/typescript/src/index.js'
import { build, userWithKey } from '../helper.js'

// The TypeScript client (clients/typescript) against the listening service over real HTTP, test mode (the sandbox
// answers), and its helpers against answers made here where the service cannot be asked for them (a 429 on demand).

async function service (t: Test) {
  const built = await build(t)
  await built.app.listen({ port: 0, host: '127.0.0.1' })
  const address = built.app.server.address() as { port: number }
  const baseUrl = `http://127.0.0.1:${address.port}`
  const { key, userId } = await userWithKey(built.app, { plan: 'pro', mode: 'test' })
  return { ...built, baseUrl, key, userId }
}

/** A fetch counting the calls that pass through it. */
function counting (base: Fetch = (request) => fetch(request)) {
  const seen: Request[] = []
  const counted: Fetch = async (request) => { seen.push(request.clone()); return await base(request) }
  return { seen, fetch: counted }
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } })

const envelope = (code: string, requestId = 'req-1') => ({ error: { code, message: `${code} happened`, requestId } })

t.test('the token source mints once, shares a mint between concurrent callers, and mints again before expiry', async (t) => {
  const { baseUrl, key } = await service(t)
  const counted = counting()
  let clock = Date.now()
  const token = aiTokenSource({ baseUrl, credential: async () => key, fetch: counted.fetch, now: () => clock })
  t.equal(token.current, undefined, 'nothing minted before the first call')
  const [a, b] = await Promise.all([token(), token()])
  t.equal(a, b, 'concurrent callers get the same token')
  t.equal(counted.seen.length, 1, 'one mint for both')
  t.equal(counted.seen[0]?.headers.get('authorization'), `Bearer ${key}`, 'the credential is the mint\'s bearer')
  t.equal(await token(), a, 'kept while valid')
  t.equal(counted.seen.length, 1)
  t.equal(token.current?.plan, 'pro')
  clock = Date.parse(token.current?.expiresAt as string) - 30_000
  const renewed = await token()
  t.equal(counted.seen.length, 2, 'minted again inside the refresh margin')
  t.not(renewed, undefined)
  token.invalidate()
  await token()
  t.equal(counted.seen.length, 3, 'minted again after invalidate()')
  const narrow = aiTokenSource({ baseUrl, credential: key, features: ['settings-assistant'], retry: false })
  await narrow()
  t.same(narrow.current?.features, ['settings-assistant'], 'narrowed to the features asked for')
})

t.test('a refused credential is a PortalApiError with the contract\'s code and the request id', async (t) => {
  const { baseUrl } = await service(t)
  const token = aiTokenSource({ baseUrl, credential: 'pak_test_not-a-key' })
  const error = await token().catch((e: unknown) => e) as PortalApiError
  t.ok(error instanceof PortalApiError)
  t.equal(error.status, 401)
  t.equal(error.code, 'UNAUTHENTICATED')
  t.match(error.requestId, /\S/)
  t.match(error.message, /^UNAUTHENTICATED: /)
})

t.test('typed calls answer the body; any non-2xx rejects with PortalApiError carrying details', async (t) => {
  const { baseUrl, key } = await service(t)
  const portal = createPortalClient({ baseUrl, token: aiTokenSource({ baseUrl, credential: key }) })
  const { data: task } = await portal.POST('/v1/tasks', { body: { title: 'Order the prints', dueDate: '2026-12-24' } })
  t.equal(task?.title, 'Order the prints')
  const { data: read } = await portal.GET('/v1/tasks/{id}', { params: { path: { id: task?.id as string } } })
  t.equal(read?.id, task?.id)
  const { data: deleted, response } = await portal.DELETE('/v1/tasks/{id}', { params: { path: { id: task?.id as string } } })
  t.equal(response.status, 204)
  t.equal(deleted, undefined)
  const missing = await portal.GET('/v1/tasks/{id}', { params: { path: { id: task?.id as string } } }).catch((e: unknown) => e) as PortalApiError
  t.equal(missing.code, 'NOT_FOUND')
  t.equal(missing.status, 404)
  t.match(missing.requestId, /^[0-9a-f-]{36}$/, 'the request id, as the service sets it')
  const invalid = await portal.POST('/v1/tasks', { body: { title: '' } }).catch((e: unknown) => e) as PortalApiError
  t.equal(invalid.code, 'VALIDATION_ERROR')
  t.ok(Array.isArray(invalid.details?.fields), 'the failing fields are in details')
  const anonymous = createPortalClient({ baseUrl })
  const { data: features } = await anonymous.GET('/v1/ai/features')
  t.ok((features?.features.length ?? 0) > 0, 'an operation without authentication needs no token')
  const refused = await anonymous.GET('/v1/tasks').catch((e: unknown) => e) as PortalApiError
  t.equal(refused.code, 'UNAUTHENTICATED')
  const own = await portal.GET('/v1/tasks', { headers: { authorization: 'Bearer not-a-token' } }).catch((e: unknown) => e) as PortalApiError
  t.equal(own.status, 401, 'a call\'s own authorization header wins')
  t.equal((await retryingFetch()(new Request(`${baseUrl}/health/live`))).status, 200, 'retryingFetch over the runtime\'s fetch')
  const fixed = createPortalClient({ baseUrl, token: (await aiTokenSource({ baseUrl, credential: key })()), retry: false, headers: { 'x-app': 'test' } })
  t.equal((await fixed.GET('/v1/tasks')).response.status, 200, 'a fixed token string')
})

t.test('pages() walks every cursor page of a list', async (t) => {
  const { baseUrl, key } = await service(t)
  const portal = createPortalClient({ baseUrl, token: aiTokenSource({ baseUrl, credential: key }) })
  const titles = ['one', 'two', 'three']
  for (const title of titles) await portal.POST('/v1/tasks', { body: { title } })
  const counted = counting()
  const paged = createPortalClient({ baseUrl, token: portal.token, fetch: counted.fetch })
  const seen: string[] = []
  for await (const task of paged.pages('/v1/tasks', { query: { limit: 1 } })) seen.push(task.title)
  t.same(seen.sort(), [...titles].sort(), 'every task once')
  t.equal(counted.seen.length, 3, 'three pages: the last one\'s cursor is null')
  t.ok(counted.seen.slice(1).every((request) => new URL(request.url).searchParams.has('cursor')), 'the cursor is followed')
  const { data: reply } = await portal.POST('/v1/ai/settings-assistant/messages', { body: { message: 'How do I make my exports sharper?' } })
  t.equal(reply?.finishReason, 'stop', 'a JSON reply')
  const usage: unknown[] = []
  for await (const event of portal.pages('/v1/ai/usage', { query: { limit: 100 } })) usage.push(event)
  t.equal(usage.length, 1, 'a page of `events` is walked too (the usage of the reply above)')
  const chats: unknown[] = []
  for await (const chat of portal.pages('/v1/chats')) chats.push(chat)
  t.same(chats, [], 'no params: the first page as the service pages it')
})

t.test('streams: the Settings Assistant, a chat and an OpenAI-compatible completion as typed events', async (t) => {
  const { baseUrl, key } = await service(t)
  const portal = createPortalClient({ baseUrl, token: aiTokenSource({ baseUrl, credential: key }) })
  const events: string[] = []
  let text = ''
  for await (const event of await portal.streamSettingsAssistant({ message: 'How do I make my exports sharper?' })) {
    events.push(event.event)
    if (event.event === 'delta') text += event.data.text
    if (event.event === 'done') t.equal(event.data.finishReason, 'stop')
  }
  t.equal(events.at(-1), 'done')
  t.ok(events.includes('delta') && text.length > 0, 'the reply came as deltas')

  const { data: chat } = await portal.POST('/v1/chats', { body: { title: 'client' } })
  const chatEvents: string[] = []
  for await (const event of await portal.streamChatMessage(chat?.id as string, { content: 'Hello there' })) {
    chatEvents.push(event.event)
    if (event.event === 'done') t.match(event.data.messageId, /^msg_/)
  }
  t.same(chatEvents.slice(-2), ['usage', 'done'])

  const chunks: string[] = []
  const { data: models } = await portal.GET('/v1/openai/models')
  for await (const chunk of await portal.streamChatCompletion({ model: models?.data[0]?.id as string, messages: [{ role: 'user', content: 'Hi' }] })) {
    chunks.push(chunk.data.object)
  }
  t.ok(chunks.length > 1 && chunks.every((o) => o === 'chat.completion.chunk'), 'chunks until [DONE]')

  const early = await portal.streamSettingsAssistant({ message: 'Sharper exports?' }, { signal: new AbortController().signal })
  const first = await early.next()
  t.equal(first.value?.event, 'delta')
  await early.return()
  const refused = await portal.streamChatMessage('chat_0000000000000000', { content: 'Hi' }).catch((e: unknown) => e) as PortalApiError
  t.equal(refused.code, 'NOT_FOUND', 'a refusal before the stream opens rejects the call')
})

t.test('a stream ending with an error event throws PortalApiError; [DONE] and an empty body end quietly', async (t) => {
  const stream = (text: string) => new Response(text, { headers: { 'content-type': 'text/event-stream' } })
  const failing = readEvents<'streamChatMessage'>(stream('event: delta\ndata: {"text":"Hi"}\n\nevent: error\ndata: {"error":{"code":"PROVIDER_ERROR","message":"The vendor failed.","requestId":"req-9"}}\n\n'))
  t.same((await failing.next()).value, { event: 'delta', data: { text: 'Hi' } })
  const error = await failing.next().catch((e: unknown) => e) as PortalApiError
  t.equal(error.code, 'PROVIDER_ERROR')
  t.equal(error.requestId, 'req-9')
  const openai = readEvents<'openaiCreateChatCompletion'>(stream('data: {"error":{"code":"PROVIDER_TIMEOUT","message":"Too slow.","type":"server_error","param":null}}\n\n'))
  t.equal((await openai.next().catch((e: unknown) => e) as PortalApiError).code, 'PROVIDER_TIMEOUT')
  const done = readEvents<'openaiCreateChatCompletion'>(stream('data: [DONE]\n\ndata: {"ignored":true}\n\n'))
  t.equal((await done.next()).done, true)
  t.equal((await readEvents(new Response(null)).next()).done, true)
})

t.test('uploads: a cut-out from a path, a staged room from bytes and a scan of a stream, through the client', async (t) => {
  const { baseUrl, key } = await service(t)
  const portal = createPortalClient({ baseUrl, token: aiTokenSource({ baseUrl, credential: key }) })
  const dir = mkdtempSync(join(tmpdir(), 'client-upload-'))
  const photo = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#c08040' } }).png().toBuffer()
  writeFileSync(join(dir, 'photo.png'), photo)
  const image = await fileFrom(join(dir, 'photo.png'))
  t.equal(image.name, 'photo.png')
  t.equal(image.type, 'image/png')
  const { data: cutOut, response } = await portal.POST('/v1/ai/background-removal', { body: { image }, parseAs: 'blob' })
  t.equal(response.status, 200)
  t.match(cutOut?.type, /^image\/(png|webp)/, 'the cut-out image')
  const { data: staging } = await portal.POST('/v1/ai/stagings', { body: { image: await fileFrom(await sharp(photo).jpeg().toBuffer(), { filename: 'room.jpg' }), style: 'scandinavian', qualityMode: 'standard' } })
  t.match(staging?.status, /queued|processing|completed/)
  const text = 'Clause 1. The tenant pays all repairs, including structural ones, without limit.'
  const { data: scan } = await portal.POST('/v1/ai/scans', { body: { file: await fileFrom(Readable.from([Buffer.from(text)]), { filename: 'lease.txt' }) } })
  t.match(scan?.id, /^scn_/)
  const web = await fileFrom(new Blob([text]).stream(), { filename: 'lease.md' })
  t.equal(web.type, 'text/markdown')
  t.equal(await web.text(), text)
  t.equal((await fileFrom(new Blob([photo], { type: 'image/png' }))).type, 'image/png', 'a Blob keeps its type')
  t.equal((await fileFrom(new File([photo], 'x.webp'))).name, 'x.webp', 'a File keeps its name')
  t.equal((await fileFrom(new Uint8Array(photo).buffer)).type, 'application/octet-stream', 'bytes with no name are octets')
  t.equal((await fileFrom(Readable.from(['text']), { filename: 'a.txt' })).size, 4, 'string chunks are bytes')
  await t.rejects(fileFrom(Readable.from([Buffer.alloc(10)]), { maxBytes: 5 }), RangeError, 'a stream over maxBytes is refused')
  const bad = await portal.POST('/v1/ai/background-removal', { body: { image: await fileFrom(Buffer.from('not an image'), { filename: 'x.png' }) } }).catch((e: unknown) => e) as PortalApiError
  t.equal(bad.code, 'UNSUPPORTED_MEDIA_TYPE', 'the service checks the bytes, not the name')
})

t.test('serializeBody: JSON unless the body holds a Blob; then every field in a form', async (t) => {
  t.equal(serializeBody({ a: 1 }), '{"a":1}')
  t.equal(serializeBody('text'), '"text"')
  t.equal(serializeBody(null), 'null')
  const form = serializeBody({ images: [new Blob(['a']), new Blob(['b'])], style: 'x', count: 2, skip: undefined, meta: { k: 'v' } }) as FormData
  t.equal(form.getAll('images').length, 2)
  t.equal(form.get('style'), 'x')
  t.equal(form.get('count'), '2')
  t.equal(form.get('meta'), '{"k":"v"}')
  t.notOk(form.has('skip'))
})

t.test('retries: 429 and 503 as Retry-After says, backoff without it, never another status', async (t) => {
  const answers = (list: Response[]) => { const sent: Request[] = []; return { sent, fetch: async (request: Request) => { sent.push(request); return list.shift() as Response } } }
  const retried: number[] = []
  const once = answers([json(429, envelope('RATE_LIMITED'), { 'retry-after': '0' }), json(200, { ok: true })])
  const fetch429 = retryingFetch({ onRetry: ({ status }) => retried.push(status) }, once.fetch)
  const answered = await fetch429(new Request('http://x.invalid/v1/tasks', { method: 'POST', body: '{"title":"a"}' }))
  t.equal(answered.status, 200)
  t.same(retried, [429])
  t.equal(await once.sent[1]?.text(), '{"title":"a"}', 'the body is sent whole again')
  const unavailable = answers([json(503, envelope('PROVIDER_UNAVAILABLE')), json(503, envelope('PROVIDER_UNAVAILABLE')), json(503, envelope('PROVIDER_UNAVAILABLE'))])
  t.equal((await retryingFetch({ baseDelayMs: 1 }, unavailable.fetch)(new Request('http://x.invalid/'))).status, 503, 'gives up after the retries')
  t.equal(unavailable.sent.length, 3)
  for (const status of [402, 400, 401, 500, 502]) {
    const no = answers([json(status, envelope('X'))])
    t.equal((await retryingFetch({}, no.fetch)(new Request('http://x.invalid/'))).status, status)
    t.equal(no.sent.length, 1, `${status} is not retried`)
  }
  const tooLong = answers([json(429, envelope('RATE_LIMITED'), { 'retry-after': '3600' })])
  t.equal((await retryingFetch({}, tooLong.fetch)(new Request('http://x.invalid/'))).status, 429, 'a wait beyond maxDelayMs is not waited out')
  const off = answers([json(429, envelope('RATE_LIMITED'), { 'retry-after': '0' })])
  t.equal((await retryingFetch({ retries: 0 }, off.fetch)(new Request('http://x.invalid/'))).status, 429)
  const controller = new AbortController()
  const waiting = retryingFetch({ onRetry: () => setImmediate(() => controller.abort(new Error('left'))) }, answers([json(503, envelope('PROVIDER_UNAVAILABLE'), { 'retry-after': '20' })]).fetch)(new Request('http://x.invalid/', { signal: controller.signal }))
  await t.rejects(waiting, /left/, 'an abort during the wait ends it')
  const aborted = new AbortController()
  aborted.abort(new Error('gone'))
  await t.rejects(retryingFetch({}, async () => json(429, {}, { 'retry-after': '0' }))(new Request('http://x.invalid/', { signal: aborted.signal })), /gone/)
  t.equal(retryDelayMs(0, '2'), 2000)
  t.ok(retryDelayMs(0, null) >= 250 && retryDelayMs(0, null) <= 500, 'the default first backoff is 250–500 ms')
  t.equal(retryDelayMs(1, null, { baseDelayMs: 100 }, () => 1), 200)
  t.equal(retryDelayMs(2, null, { baseDelayMs: 100 }, () => 0), 200)
  t.equal(retryAfterSeconds(new Date(Date.now() + 5000).toUTCString()), 5)
  t.equal(retryAfterSeconds('soon'), undefined)
  t.equal(retryAfterSeconds(''), undefined)
  t.equal(retryAfterSeconds(null), undefined)
})

t.test('an AI token the service calls expired is minted again and the call sent once more', async (t) => {
  const minted: string[] = []
  const calls: string[] = []
  const fake: Fetch = async (request) => {
    const url = new URL(request.url)
    if (url.pathname === '/v1/ai/tokens') {
      const token = `tok-${minted.length + 1}`
      minted.push(token)
      return json(201, { token, tokenType: 'Bearer', expiresIn: 900, expiresAt: new Date(Date.now() + 900_000).toISOString(), plan: 'pro', mode: 'test', features: [] })
    }
    const bearer = request.headers.get('authorization') ?? ''
    calls.push(bearer)
    if (bearer === 'Bearer tok-1') return json(401, envelope('TOKEN_EXPIRED'))
    if (url.pathname === '/v1/chats') return json(401, envelope('UNAUTHENTICATED'))
    return json(200, { data: [], nextCursor: null })
  }
  const portal = createPortalClient({ baseUrl: 'http://fake.invalid/', token: aiTokenSource({ baseUrl: 'http://fake.invalid', credential: 'pak_test_x', fetch: fake }), fetch: fake })
  const { data } = await portal.GET('/v1/tasks')
  t.same(data, { data: [], nextCursor: null })
  t.same(calls, ['Bearer tok-1', 'Bearer tok-2'])
  const other = await portal.GET('/v1/chats').catch((e: unknown) => e) as PortalApiError
  t.equal(other.code, 'UNAUTHENTICATED', 'another 401 is not retried')
  t.equal(minted.length, 2)
  const plain = createPortalClient({ baseUrl: 'http://fake.invalid', token: async () => 'tok-1', fetch: fake })
  t.equal((await plain.GET('/v1/tasks').catch((e: unknown) => e) as PortalApiError).code, 'TOKEN_EXPIRED', 'a plain function is not a source: no refresh')
})

t.test('PortalApiError without the envelope: UNEXPECTED_RESPONSE, the header\'s request id and Retry-After', async (t) => {
  const error = await PortalApiError.from(new Response('<html>Bad gateway</html>', { status: 502, headers: { 'x-request-id': 'edge-1', 'retry-after': '7' } }))
  t.equal(error.code, 'UNEXPECTED_RESPONSE')
  t.equal(error.requestId, 'edge-1')
  t.equal(error.retryAfter, 7)
  t.equal(error.details, undefined)
  t.match(error.message, /502 without its error envelope/)
  t.equal(new PortalApiError(500, { error: 'text' }).code, 'UNEXPECTED_RESPONSE')
})

t.test('verifyWebhook checks a Standard Webhooks signature and answers the delivery', async (t) => {
  const secret = `whsec_${Buffer.from('a-webhook-secret-of-32-bytes!!!!').toString('base64')}`
  const body = JSON.stringify({ type: 'scan.completed', timestamp: new Date().toISOString(), data: { id: 'scan_1' } })
  const id = 'msg_1'
  const at = new Date()
  const signature = new Webhook(secret).sign(id, at, body)
  const headers = { 'webhook-id': id, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': signature }
  t.equal(verifyWebhook(body, headers, secret).type, 'scan.completed')
  t.equal(verifyWebhook(new TextEncoder().encode(body), new Headers(headers), secret.slice('whsec_'.length)).data.id, 'scan_1', 'bytes, Headers, a bare secret')
  t.equal(verifyWebhook(body, { ...headers, 'Webhook-Signature': [signature], extra: undefined }, secret).type, 'scan.completed', 'Node\'s header arrays')
  t.throws(() => verifyWebhook(body.replace('scan_1', 'scan_2'), headers, secret), WebhookVerificationError, 'a changed body')
  t.throws(() => verifyWebhook(body, { ...headers, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000) - 3600) }, secret), WebhookVerificationError, 'an old delivery')
})
