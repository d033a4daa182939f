import { setTimeout as sleep } from 'node:timers/promises'
import sharp from 'sharp'
import t from 'tap'
import { fileFrom, PortalApiError } from '../../clients/typescript/src/index.js'
import { mintToken, refused, runUserId, settings, smokeClient as client } from './client.js'

// The deployment through the TypeScript client, as an app uses it: typed calls, the token source, streams, pages
// and uploads, for every feature. Every answer the client receives is held against the committed contract too.
// (The other smoke files send raw HTTP where they must: malformed bodies and wrong types a typed client cannot send.)

t.test('client: entitlements, the Settings Assistant streamed, a chat streamed and paged, the error class', async (t) => {
  const portal = client(t, await mintToken(t))
  const { data: entitlements } = await portal.GET('/v1/ai/entitlements')
  t.equal(entitlements.mode, 'test')

  let reply = ''
  let done = false
  for await (const event of await portal.streamSettingsAssistant({ message: 'How do I make my exports sharper?' })) {
    if (event.event === 'delta') reply += event.data.text
    if (event.event === 'done') done = true
  }
  t.ok(reply.length > 0 && done, 'a streamed reply, then done')

  const { data: chat } = await portal.POST('/v1/chats', { body: { title: 'smoke through the client' } })
  const events: string[] = []
  for await (const event of await portal.streamChatMessage(chat.id, { content: 'Summarise chapter one.' })) events.push(event.event)
  t.same(events.slice(-2), ['usage', 'done'])
  const messages = []
  for await (const message of portal.pages('/v1/chats/{id}/messages', { path: { id: chat.id }, query: { limit: 1 } })) messages.push(message.role)
  t.same(messages, ['assistant', 'user'], 'both messages, one page each, newest first')
  await portal.DELETE('/v1/chats/{id}', { params: { path: { id: chat.id } } })

  const missing = await refused(t, portal.GET('/v1/chats/{id}', { params: { path: { id: chat.id } } }), 404, 'NOT_FOUND')
  t.ok(missing instanceof PortalApiError, 'an error is a PortalApiError')
  const invalid = await refused(t, portal.POST('/v1/tasks', { body: { title: '' } }), 400, 'VALIDATION_ERROR')
  t.ok(Array.isArray(invalid?.details?.fields), 'the failing fields in details')
})

t.test('client: uploads (a cut-out, a staged room polled to completed, a scanned document) and their pages', async (t) => {
  const portal = client(t, await mintToken(t))
  const photo = await sharp({ create: { width: 480, height: 320, channels: 3, background: '#d9c8b0' } }).jpeg().toBuffer()
  const { data: cutOut } = await portal.POST('/v1/ai/background-removal', { body: { image: await fileFrom(photo, { filename: 'photo.jpg' }) }, parseAs: 'blob' })
  t.match(cutOut.type, /^image\//, 'a cut-out')

  const { data: submitted } = await portal.POST('/v1/ai/stagings', { body: { image: await fileFrom(photo, { filename: 'room.jpg' }), style: 'scandinavian', qualityMode: 'standard' } })
  let staging = submitted
  for (let i = 0; i < 240 && (staging.status === 'queued' || staging.status === 'processing'); i++) {
    await sleep(250)
    staging = (await portal.GET('/v1/ai/stagings/{id}', { params: { path: { id: submitted.id } } })).data
  }
  t.equal(staging.status, 'completed')
  const stagings: string[] = []
  for await (const item of portal.pages('/v1/ai/stagings', { query: { limit: 100 } })) stagings.push(item.id)
  t.ok(stagings.includes(submitted.id), 'the staging is in the pages')
  await portal.DELETE('/v1/ai/stagings/{id}', { params: { path: { id: submitted.id } } })

  const text = 'Clause 4. The tenant pays for every repair of the building, structural ones included, without limit.'
  // One scan: the scans smoke file sends most of the plan's 10 a minute (a text body is its case).
  const { data: scan } = await portal.POST('/v1/ai/scans', { body: { file: await fileFrom(Buffer.from(text), { filename: 'lease.txt' }) } })
  t.equal(scan.filename, 'lease.txt')
  const scans: string[] = []
  for await (const item of portal.pages('/v1/ai/scans', { query: { limit: 100 } })) scans.push(item.id)
  t.ok(scans.includes(scan.id), 'the scan is in the pages')
  await portal.DELETE('/v1/ai/scans/{id}', { params: { path: { id: scan.id } } })
})

t.test('client: tasks, webhooks, billing and the OpenAI-compatible stream', async (t) => {
  const portal = client(t, await mintToken(t))
  const { data: task } = await portal.POST('/v1/tasks', { body: { title: 'Smoke: through the client' } })
  await portal.PATCH('/v1/tasks/{id}', { params: { path: { id: task.id } }, body: { status: 'done' } })
  const titles: string[] = []
  for await (const item of portal.pages('/v1/tasks', { query: { status: 'done' } })) titles.push(item.title)
  t.ok(titles.includes('Smoke: through the client'), 'the task is in the pages, done')
  await portal.DELETE('/v1/tasks/{id}', { params: { path: { id: task.id } } })

  const { data: webhook } = await portal.POST('/v1/webhooks', { body: { url: 'https://8.8.8.8/portal-ai-smoke-client', events: ['ping'] } })
  t.match(webhook.secret, /^whsec_/)
  const hooks: string[] = []
  for await (const item of portal.pages('/v1/webhooks')) hooks.push(item.id)
  t.ok(hooks.includes(webhook.id))
  await portal.DELETE('/v1/webhooks/{id}', { params: { path: { id: webhook.id } } })

  const { data: balance } = await portal.GET('/v1/billing/balance')
  t.equal(typeof balance.billed, 'boolean')
  for await (const transaction of portal.pages('/v1/billing/transactions')) t.match(transaction.id, /\S/)

  const { data: models } = await portal.GET('/v1/openai/models')
  const model = models.data[0]?.id as string
  const chunks: string[] = []
  for await (const chunk of await portal.streamChatCompletion({ model, messages: [{ role: 'user', content: 'Say hello.' }] })) chunks.push(chunk.data.object)
  t.ok(chunks.length > 1 && chunks.every((object) => object === 'chat.completion.chunk'), 'chunks until [DONE]')
})

t.test('client: the admin API with the admin token', { skip: settings().adminToken === undefined ? 'no SMOKE_ADMIN_TOKEN' : false }, async (t) => {
  const admin = client(t, settings().adminToken)
  const userId = runUserId('client')
  await admin.PUT('/v1/admin/licenses/{userId}', { params: { path: { userId } }, body: { plan: 'pro', status: 'active' } })
  const { data: key } = await admin.POST('/v1/admin/keys', { body: { userId, mode: 'test', name: 'client smoke' } })
  const { data: keys } = await admin.GET('/v1/admin/keys', { params: { query: { userId } } })
  t.same(keys.keys.map((k) => k.id), [key.id])
  await admin.DELETE('/v1/admin/keys/{keyId}', { params: { path: { keyId: key.id } } })
  const actions: string[] = []
  for await (const event of admin.pages('/v1/admin/audit', { query: { target: `key:${key.id}`, limit: 1 } })) actions.push(event.action)
  t.same(actions, ['key.revoked', 'key.created'], 'the key\'s audit trail, a page per event')
  await refused(t, admin.GET('/v1/admin/licenses/{userId}', { params: { path: { userId: runUserId('nobody') } } }), 404, 'NOT_FOUND')
})
