import t from 'tap'
import { call, expectError, mintToken, runUserId, settings } from './client.js'

const admin = settings().adminToken

t.test('models and chats: create, message (JSON and streamed), history, feedback, rename, delete; bad input refused', async (t) => {
  const token = await mintToken(t)
  const models = await call(t, 'listModels', 200, { path: '/v1/ai/models', token })
  t.ok((models.json.data as Array<{ id: string }>).some((m) => m.id === 'gpt-4o-mini'), 'the catalog lists gpt-4o-mini')
  const created = await call(t, 'createChat', 201, { method: 'POST', path: '/v1/chats', token, body: { title: 'smoke', contextRef: 'book:smoke' } })
  const id = created.json.id as string
  const reply = await call(t, 'sendChatMessage', 201, { method: 'POST', path: `/v1/chats/${id}/messages`, token, body: { content: 'Summarise chapter one.', model: 'gpt-4o-mini' } })
  t.equal(reply.json.role, 'assistant')
  t.match(reply.json.usage, { inputTokens: Number, outputTokens: Number, costMicroUsd: Number, costCents: Number })
  const streamed = await call(t, 'streamChatMessage', 200, { method: 'POST', path: `/v1/chats/${id}/stream`, token, body: { content: 'And chapter two?' } })
  t.match(streamed.text, /event: delta[\s\S]*event: usage[\s\S]*event: done/, 'deltas, usage, done')
  const history = await call(t, 'listChatMessages', 200, { path: `/v1/chats/${id}/messages?limit=10`, token })
  t.equal((history.json.data as unknown[]).length, 4)
  await call(t, 'rateChatMessage', 204, { method: 'POST', path: `/v1/chats/${id}/messages/${reply.json.id as string}/feedback`, token, body: { rating: 1 } })
  await call(t, 'updateChat', 200, { method: 'PATCH', path: `/v1/chats/${id}`, token, body: { archived: true } })
  await call(t, 'getChat', 200, { path: `/v1/chats/${id}`, token })
  await call(t, 'listChats', 200, { path: '/v1/chats?archived=true&limit=5', token })

  expectError(t, await call(t, 'sendChatMessage', 400, { method: 'POST', path: `/v1/chats/${id}/messages`, token, body: { content: '' } }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'sendChatMessage', 400, { method: 'POST', path: `/v1/chats/${id}/messages`, token, body: { content: 'x'.repeat(8001) } }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'sendChatMessage', 400, { method: 'POST', path: `/v1/chats/${id}/messages`, token, body: { content: 'hi', model: 'no-such-model' } }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'createChat', 400, { method: 'POST', path: '/v1/chats', token, body: { tools: ['email'] } }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'listChatMessages', 400, { path: `/v1/chats/${id}/messages?cursor=bm9wZQ`, token }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'getChat', 404, { path: '/v1/chats/chat_0000000000000000', token }), 'NOT_FOUND')
  expectError(t, await call(t, 'listChats', 401, { path: '/v1/chats' }), 'UNAUTHENTICATED')
  await call(t, 'deleteChat', 204, { method: 'DELETE', path: `/v1/chats/${id}`, token })
  expectError(t, await call(t, 'getChat', 404, { path: `/v1/chats/${id}`, token }), 'NOT_FOUND')
})

t.test('billing: balance, limits, usage, transactions and estimates', async (t) => {
  const token = await mintToken(t)
  const balance = await call(t, 'getBalance', 200, { path: '/v1/billing/balance', token })
  t.equal(typeof balance.json.billed, 'boolean')
  await call(t, 'getBillingLimits', 200, { path: '/v1/billing/limits', token })
  await call(t, 'getBillingUsage', 200, { path: '/v1/billing/usage?period=week', token })
  await call(t, 'listTransactions', 200, { path: '/v1/billing/transactions?limit=5', token })
  expectError(t, await call(t, 'getTransaction', 404, { path: '/v1/billing/transactions/use_999999999999', token }), 'NOT_FOUND')
  expectError(t, await call(t, 'getBillingUsage', 400, { path: '/v1/billing/usage?period=year', token }), 'VALIDATION_ERROR')
  const estimate = await call(t, 'estimateCost', 200, { method: 'POST', path: '/v1/ai/estimate', token, body: { model: 'gpt-4o-mini', inputTokens: 1000, estimatedOutputTokens: 200 } })
  t.ok((estimate.json.estimatedCostMicroUsd as number) > 0)
  expectError(t, await call(t, 'estimateCost', 400, { method: 'POST', path: '/v1/ai/estimate', token, body: { model: 'gpt-4o-mini' } }), 'VALIDATION_ERROR')
})

t.test('admin: credits and chat analytics', { skip: admin === undefined ? 'no SMOKE_ADMIN_TOKEN' : false }, async (t) => {
  const token = admin as string
  const user = runUserId('credits')
  const granted = await call(t, 'grantCredits', 201, { method: 'POST', path: `/v1/admin/credits/${user}`, token, body: { amountCents: 1, reason: 'smoke', mode: 'test' } })
  t.match(granted.json, { userId: user, mode: 'test', balance: { purchasedCreditsCents: 1 } })
  await call(t, 'getCredits', 200, { path: `/v1/admin/credits/${user}?mode=test`, token })
  expectError(t, await call(t, 'grantCredits', 400, { method: 'POST', path: `/v1/admin/credits/${user}`, token, body: { amountCents: -1, reason: 'smoke' } }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'grantCredits', 401, { method: 'POST', path: `/v1/admin/credits/${user}`, body: { amountCents: 1, reason: 'smoke' } }), 'UNAUTHENTICATED')
  await call(t, 'getAiAnalytics', 200, { path: '/v1/admin/analytics/ai?mode=test', token })
})
