import t from 'tap'
import { call, expectError, mintToken, refused, runUserId, settings, smokeClient } from './client.js'

const admin = settings().adminToken

t.test('models and chats: create, message (JSON and streamed), history, feedback, rename, delete; bad input refused', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const { data: models } = await portal.GET('/v1/ai/models')
  t.ok(models.data.some((m) => m.id === 'gpt-4o-mini'), 'the catalog lists gpt-4o-mini')
  const { data: chat } = await portal.POST('/v1/chats', { body: { title: 'smoke', contextRef: 'book:smoke' } })
  const byId = { params: { path: { id: chat.id } } }
  const { data: reply } = await portal.POST('/v1/chats/{id}/messages', { ...byId, body: { content: 'Summarise chapter one.', model: 'gpt-4o-mini' } })
  t.equal(reply.role, 'assistant')
  t.match(reply.usage, { inputTokens: Number, outputTokens: Number, costMicroUsd: Number, costCents: Number })
  const events: string[] = []
  for await (const event of await portal.streamChatMessage(chat.id, { content: 'And chapter two?' })) events.push(event.event)
  t.ok(events.includes('delta') && events.slice(-2).join() === 'usage,done', 'deltas, usage, done')
  const { data: history } = await portal.GET('/v1/chats/{id}/messages', { params: { path: { id: chat.id }, query: { limit: 10 } } })
  t.equal(history.data.length, 4)
  await portal.POST('/v1/chats/{id}/messages/{messageId}/feedback', { params: { path: { id: chat.id, messageId: reply.id } }, body: { rating: 1 } })
  await portal.PATCH('/v1/chats/{id}', { ...byId, body: { archived: true } })
  await portal.GET('/v1/chats/{id}', byId)
  await portal.GET('/v1/chats', { params: { query: { archived: true, limit: 5 } } })

  await refused(t, portal.POST('/v1/chats/{id}/messages', { ...byId, body: { content: '' } }), 400, 'VALIDATION_ERROR')
  await refused(t, portal.POST('/v1/chats/{id}/messages', { ...byId, body: { content: 'x'.repeat(8001) } }), 400, 'VALIDATION_ERROR')
  await refused(t, portal.POST('/v1/chats/{id}/messages', { ...byId, body: { content: 'hi', model: 'no-such-model' } }), 400, 'VALIDATION_ERROR')
  // A tool the contract does not list cannot be typed: sent raw.
  expectError(t, await call(t, 'createChat', 400, { method: 'POST', path: '/v1/chats', token: await mintToken(t), body: { tools: ['email'] } }), 'VALIDATION_ERROR')
  await refused(t, portal.GET('/v1/chats/{id}/messages', { params: { path: { id: chat.id }, query: { cursor: 'bm9wZQ' } } }), 400, 'VALIDATION_ERROR')
  await refused(t, portal.GET('/v1/chats/{id}', { params: { path: { id: 'chat_0000000000000000' } } }), 404, 'NOT_FOUND')
  await refused(t, smokeClient(t).GET('/v1/chats'), 401, 'UNAUTHENTICATED')
  await portal.DELETE('/v1/chats/{id}', byId)
  await refused(t, portal.GET('/v1/chats/{id}', byId), 404, 'NOT_FOUND')
})

t.test('billing: balance, limits, usage, transactions and estimates', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const { data: balance } = await portal.GET('/v1/billing/balance')
  t.equal(typeof balance.billed, 'boolean')
  await portal.GET('/v1/billing/limits')
  await portal.GET('/v1/billing/usage', { params: { query: { period: 'week' } } })
  await portal.GET('/v1/billing/transactions', { params: { query: { limit: 5 } } })
  await refused(t, portal.GET('/v1/billing/transactions/{id}', { params: { path: { id: 'use_999999999999' } } }), 404, 'NOT_FOUND')
  // A period the contract does not list cannot be typed: sent raw.
  expectError(t, await call(t, 'getBillingUsage', 400, { path: '/v1/billing/usage?period=year', token: await mintToken(t) }), 'VALIDATION_ERROR')
  const { data: estimate } = await portal.POST('/v1/ai/estimate', { body: { model: 'gpt-4o-mini', inputTokens: 1000, estimatedOutputTokens: 200 } })
  t.ok(estimate.estimatedCostMicroUsd > 0)
  await refused(t, portal.POST('/v1/ai/estimate', { body: { model: 'gpt-4o-mini' } }), 400, 'VALIDATION_ERROR')
})

t.test('admin: credits and chat analytics', { skip: admin === undefined ? 'no SMOKE_ADMIN_TOKEN' : false }, async (t) => {
  const operator = smokeClient(t, admin)
  const user = runUserId('credits')
  const ofUser = { path: { userId: user } }
  const { data: granted } = await operator.POST('/v1/admin/credits/{userId}', { params: ofUser, body: { amountCents: 1, reason: 'smoke', mode: 'test' } })
  t.match(granted, { userId: user, mode: 'test', balance: { purchasedCreditsCents: 1 } })
  await operator.GET('/v1/admin/credits/{userId}', { params: { ...ofUser, query: { mode: 'test' } } })
  await refused(t, operator.POST('/v1/admin/credits/{userId}', { params: ofUser, body: { amountCents: -1, reason: 'smoke' } }), 400, 'VALIDATION_ERROR')
  await refused(t, smokeClient(t).POST('/v1/admin/credits/{userId}', { params: ofUser, body: { amountCents: 1, reason: 'smoke' } }), 401, 'UNAUTHENTICATED')
  await operator.GET('/v1/admin/analytics/ai', { params: { query: { mode: 'test' } } })
})
