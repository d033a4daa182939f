import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { http } from 'msw'
import sharp from 'sharp'
import t from 'tap'
import { costMicroUsd } from '../../../plugins/chats.js'
import type { CreditAsk } from '../../../plugins/credits.js'
import { loadModels } from '../../../plugins/models.js'
import { withMarkup } from '../../../plugins/money.js'
import { adminHeaders, build, dumpAllTables, mint, multipart, newUserId } from '../../helper.js'
import { interceptNetwork } from '../../network.js'
import { OPENAI_URL, sseResponse, streamChunks } from '../../openai-fake.js'

const PLANS_FILE = join(mkdtempSync(join(tmpdir(), 'billing-plans-')), 'plans.json')
const features = {
  chat: { quota: { limit: 10_000_000, period: 'month' }, rateLimitPerMinute: 1000 },
  'settings-assistant': { quota: { limit: 10_000_000, period: 'month' }, rateLimitPerMinute: 1000 },
  'background-removal': { quota: { limit: 1000, period: 'month' }, rateLimitPerMinute: 1000 }
}
writeFileSync(PLANS_FILE, JSON.stringify({
  plans: {
    metered: { name: 'Metered', features, credits: { monthlyFreeCents: 10, dailyTokenLimit: 5000 } },
    tiny: { name: 'Tiny', features, credits: { monthlyFreeCents: 1 } },
    capped: { name: 'Capped', features, credits: { monthlyFreeCents: 100, monthlyCostLimitCents: 1, graceHours: 24 } },
    plain: { name: 'Plain', features }
  },
  prices: { sandbox: { perCall: 0 }, 'sandbox/sandbox-catalog-1': { perInputUnit: 0, perOutputUnit: 0 } }
}))
const gpt = loadModels().find((m) => m.id === 'gpt-4o-mini') as ReturnType<typeof loadModels>[number]

async function userOn (app: FastifyInstance, plan: string) {
  const userId = newUserId('billing')
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan } })
  const { key } = (await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId, mode: 'test' } })).json<{ key: string }>()
  return { userId, token: (await mint(app, key)).token }
}
const as = (token: string) => ({ authorization: `Bearer ${token}` })
const get = (app: FastifyInstance, token: string, url: string) => app.inject({ url, headers: as(token) })
async function say (app: FastifyInstance, token: string, content: string) {
  const chat = (await app.inject({ method: 'POST', url: '/v1/chats', headers: as(token), payload: {} })).json<{ id: string }>()
  const res = await app.inject({ method: 'POST', url: `/v1/chats/${chat.id}/messages`, headers: as(token), payload: { content, model: 'gpt-4o-mini' } })
  return { chat, res }
}

t.test('a billed chat: held before the call, charged with the markup, and every figure adds up', async (t) => {
  const { app, logs, store } = await build(t, { env: { PLANS_FILE } })
  const { userId, token } = await userOn(app, 'metered')
  t.match((await get(app, token, '/v1/billing/balance')).json(), { billed: true, balanceCents: 10, balanceMicroUsd: 100_000, freeCreditsRemainingCents: 10, purchasedCreditsCents: 0, lifetimeUsageCents: 0 })

  // What a call holds is what POST /v1/ai/estimate says.
  const asks: CreditAsk[] = []
  const reserve = app.metering.reserve
  app.metering.reserve = async (...args) => {
    if (args[4] !== undefined) asks.push(args[4].ask)
    return reserve(...args)
  }
  const content = 'CANARY-BILLING-5d1e how long is chapter one?'
  const estimate = await app.inject({ method: 'POST', url: '/v1/ai/estimate', headers: as(token), payload: { model: 'gpt-4o-mini', messages: [{ role: 'user', content }] } })
  t.equal(estimate.statusCode, 200)
  const { chat, res } = await say(app, token, content)
  t.equal(res.statusCode, 201)
  t.equal(asks[0]?.amountMicroUsd, estimate.json<{ estimatedCostMicroUsd: number }>().estimatedCostMicroUsd, 'the estimate is the hold')
  t.match(estimate.json(), { model: 'gpt-4o-mini', outputTokens: 4096, inputCostPer1M: 0.15, outputCostPer1M: 0.6, markupPercent: 40 })
  t.match(res.headers['x-credits-warning'], /^daily-token-limit=8\d%$/, 'the hold of 4,096 reply tokens is over 80 % of the 5,000 a day')

  const reply = res.json<{ usage: { inputTokens: number, outputTokens: number, costMicroUsd: number, costCents: number } }>()
  const charged = withMarkup(costMicroUsd(gpt, reply.usage.inputTokens, reply.usage.outputTokens), 40)
  t.equal(reply.usage.costMicroUsd, charged, 'the answer says what was charged: list price and markup')
  t.match((await get(app, token, '/v1/billing/balance')).json(), { balanceMicroUsd: 100_000 - charged, lifetimeUsageCents: 0 })

  const grant = await app.inject({ method: 'POST', url: `/v1/admin/credits/${userId}`, headers: adminHeaders, payload: { amountCents: 250, reason: 'Order 2026-1187', mode: 'test' } })
  t.equal(grant.statusCode, 201)
  t.match(grant.json(), { userId, mode: 'test', plan: 'metered', grantId: /^grant_\d+$/, balance: { purchasedCreditsCents: 250 } })
  const audit = (await store.query<{ details: unknown }>('SELECT details FROM audit_events WHERE action = $1 AND target = $2', ['credits.granted', `user:${userId}`])).rows
  t.same(audit.map((a) => a.details), [{ mode: 'test', amountCents: 250, grantId: grant.json<{ grantId: string }>().grantId }], 'audited, without the reason')

  const page = (await get(app, token, '/v1/billing/transactions?limit=1')).json<{ data: Array<Record<string, unknown>>, nextCursor: string }>()
  t.match(page.data, [{ operationType: 'credit-grant', creditCents: 250, costMicroUsd: 0, reason: 'Order 2026-1187', feature: null }])
  const next = (await get(app, token, `/v1/billing/transactions?limit=1&cursor=${page.nextCursor}`)).json<{ data: Array<{ id: string }>, nextCursor: null }>()
  t.match(next, { data: [{ operationType: 'usage', feature: 'chat', model: 'gpt-4o-mini', provider: 'sandbox', costMicroUsd: charged, markupPercent: 40, inputCostPer1M: 0.15, outputCostPer1M: 0.6, sessionId: chat.id, tokensInput: reply.usage.inputTokens }], nextCursor: null })
  const one = await get(app, token, `/v1/billing/transactions/${next.data[0]?.id as string}`)
  t.match(one.json(), { id: next.data[0]?.id, operationId: res.headers['x-request-id'] }, 'the operation is the call\'s request id')
  t.equal((await get(app, token, '/v1/billing/transactions?cursor=bm9wZQ')).statusCode, 400, 'a cursor that is not ours')
  t.equal((await get(app, token, '/v1/billing/transactions/use_x')).statusCode, 400)

  for (const period of ['day', 'week', 'month']) {
    t.match((await get(app, token, `/v1/billing/usage?period=${period}`)).json(), { period, costMicroUsd: charged, data: [{ feature: 'chat', model: 'gpt-4o-mini', calls: 1, costMicroUsd: charged }] })
  }
  t.equal((await get(app, token, '/v1/billing/usage?period=year')).statusCode, 400)
  t.match((await get(app, token, '/v1/billing/limits')).json(), { billed: true, markupPercent: 40, monthlyFreeCents: 10, dailyTokenLimit: 5000, dailyTokensUsed: reply.usage.inputTokens + reply.usage.outputTokens, monthlyCostLimitCents: null, graceHours: 24, graceEndsAt: null })

  // Binary answers carry their cost in headers; the sandbox costs nothing.
  const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#fff' } }).png().toBuffer()
  const body = multipart([{ name: 'image', value: png, filename: 'a.png', type: 'image/png' }])
  const removed = await app.inject({ method: 'POST', url: '/v1/ai/background-removal', headers: { ...as(token), 'content-type': body.contentType }, payload: body.payload })
  t.equal(removed.statusCode, 200)
  t.same([removed.headers['ai-cost-micro-usd'], removed.headers['ai-cost-cents']], ['0', '0'])
  const asked = await app.inject({ method: 'POST', url: '/v1/ai/settings-assistant/messages', headers: as(token), payload: { message: 'sharper exports' } })
  t.match(asked.json(), { usage: { costMicroUsd: 0, costCents: 0 } })
  t.match((await get(app, token, '/v1/billing/usage')).json<{ data: unknown[] }>().data, [{ feature: 'chat' }, { feature: 'background-removal', model: null, tokensInput: 0 }, { feature: 'settings-assistant' }])

  const dump = await dumpAllTables(store)
  t.notOk(dump.includes('CANARY-BILLING'), 'the message is in no column of any table')
  t.notOk(logs.text.includes('CANARY-BILLING'), 'nor in a log line')
})

t.test('not enough credits: 402 with the balance and what was needed; nothing held, nothing charged', async (t) => {
  const { app } = await build(t, { env: { PLANS_FILE } })
  const { userId, token } = await userOn(app, 'tiny')
  const { res } = await say(app, token, 'hello')
  t.equal(res.statusCode, 402, 'a hold of the dearest fallback\'s reply limit is more than a cent')
  t.match(res.json(), { error: { code: 'INSUFFICIENT_CREDITS', details: { reason: 'balance', balanceCents: 1, requiredCents: Number, balanceMicroUsd: 10_000, requiredMicroUsd: Number } } })
  t.notOk(res.headers['retry-after'], 'not a rate limit: no Retry-After')
  t.equal((await get(app, token, '/v1/billing/balance')).json<{ balanceMicroUsd: number }>().balanceMicroUsd, 10_000)
  t.match((await app.inject({ url: `/v1/admin/usage?userId=${userId}&mode=test`, headers: adminHeaders })).json(), { features: [{ id: 'chat', used: 0, reserved: 0 }] }, 'the quota was not held either')
  const ok = await app.inject({ method: 'POST', url: '/v1/ai/estimate', headers: as(token), payload: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] } })
  t.equal(ok.json<{ estimatedCostMicroUsd: number }>().estimatedCostMicroUsd, res.json<{ error: { details: { requiredMicroUsd: number } } }>().error.details.requiredMicroUsd, 'what the estimate says is what was needed')
})

t.test('the monthly cost limit is soft: the call that reaches it passes, and its grace period shows in the limits', async (t) => {
  const { app } = await build(t, { env: { PLANS_FILE } })
  const { token } = await userOn(app, 'capped')
  const { res } = await say(app, token, 'hello')
  t.equal(res.statusCode, 201, 'its hold is over the 1-cent limit: it starts the grace period')
  t.match(res.headers['x-credits-warning'], /^monthly-cost-limit=\d+%$/)
  const limits = (await get(app, token, '/v1/billing/limits')).json<{ graceEndsAt: string, monthlyCostLimitCents: number }>()
  t.equal(limits.monthlyCostLimitCents, 1)
  const hours = (new Date(limits.graceEndsAt).getTime() - Date.now()) / 3_600_000
  t.ok(hours > 23.9 && hours <= 24, 'the grace period ends 24 hours after the limit was reached')
})

t.test('a plan without credits is not billed; another user\'s transaction is a 404; bad amounts and estimates are 400', async (t) => {
  const { app } = await build(t, { env: { PLANS_FILE } })
  const plain = await userOn(app, 'plain')
  const { res } = await say(app, plain.token, 'hello there')
  const usage = res.json<{ usage: { inputTokens: number, outputTokens: number, costMicroUsd: number } }>().usage
  t.equal(usage.costMicroUsd, costMicroUsd(gpt, usage.inputTokens, usage.outputTokens), 'the list price, no markup')
  t.notOk(res.headers['x-credits-warning'])
  t.match((await get(app, plain.token, '/v1/billing/balance')).json(), { billed: false, balanceCents: 0 })
  t.match((await get(app, plain.token, '/v1/billing/limits')).json(), { billed: false, markupPercent: null, monthlyFreeCents: null, dailyTokenLimit: null, graceHours: null })
  t.same((await get(app, plain.token, '/v1/billing/transactions')).json(), { data: [], nextCursor: null })
  const est = await app.inject({ method: 'POST', url: '/v1/ai/estimate', headers: as(plain.token), payload: { model: 'gpt-4o-mini', inputTokens: 1000, estimatedOutputTokens: 500 } })
  t.match(est.json(), { markupPercent: 0, inputTokens: 1000, outputTokens: 500, estimatedCostMicroUsd: 3500 }, 'the dearest of the model (450) and its fallbacks (Claude Haiku 4.5: 1,000 × $1/M + 500 × $5/M)')

  const billed = await userOn(app, 'metered')
  await say(app, billed.token, 'hello')
  const theirs = (await get(app, billed.token, '/v1/billing/transactions')).json<{ data: Array<{ id: string }> }>().data[0]?.id as string
  t.equal((await get(app, plain.token, `/v1/billing/transactions/${theirs}`)).statusCode, 404, 'another user\'s transaction')
  t.equal((await get(app, billed.token, '/v1/billing/transactions/use_999999999')).statusCode, 404)

  for (const amountCents of [-5, 0, 1.5, 1e12, '100', null]) {
    const bad = await app.inject({ method: 'POST', url: `/v1/admin/credits/${billed.userId}`, headers: adminHeaders, payload: { amountCents, reason: 'x' } })
    t.equal(bad.statusCode, 400, `amountCents ${String(amountCents)}`)
  }
  t.equal((await app.inject({ method: 'POST', url: `/v1/admin/credits/${billed.userId}`, headers: adminHeaders, payload: { amountCents: 5 } })).statusCode, 400, 'a reason is required')
  t.match((await app.inject({ method: 'POST', url: `/v1/admin/credits/${billed.userId}`, headers: adminHeaders, payload: { amountCents: 5, reason: 'Goodwill' } })).json(), { mode: 'live', balance: { purchasedCreditsCents: 5 } }, 'the live balance when no mode is given')
  t.match((await app.inject({ url: `/v1/admin/credits/${newUserId()}`, headers: adminHeaders })).json(), { plan: null, balance: { billed: false } })

  const estimates: Array<[Record<string, unknown>, number]> = [
    [{ model: 'nope', inputTokens: 1 }, 400],
    [{ model: 'gpt-4o-mini' }, 400],
    [{ model: 'gpt-4o-mini', inputTokens: 1, messages: [{ role: 'user', content: 'a' }] }, 400],
    [{ model: 'gpt-4o-mini', messages: [{ role: 'assistant', content: 'a' }] }, 400],
    [{ model: 'gpt-4o-mini', inputTokens: -1 }, 400],
    [{ model: 'gpt-4.1', inputTokens: 1 }, 403]
  ]
  for (const [payload, status] of estimates) {
    const res = await app.inject({ method: 'POST', url: '/v1/ai/estimate', headers: as(plain.token), payload })
    t.equal(res.statusCode, status, JSON.stringify(payload))
  }
})

t.test('live: a streamed call is charged its list price and markup in the done event; a stream cut short is charged what was generated', async (t) => {
  let cut = false
  interceptNetwork(t, http.post(OPENAI_URL, () => cut
    ? sseResponse(streamChunks(['First words ', 'then more', ' and more']), { cutAfter: 2 })
    : sseResponse(streamChunks(['Once ', 'upon ', 'a time.'], [], { prompt_tokens: 1200, completion_tokens: 300 }))))
  const { app } = await build(t, { env: { PLANS_FILE, OPENAI_API_KEY: 'sk-billing-0123456789' } })
  const userId = newUserId('billing-live')
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: 'tiny' } })
  const { key } = (await app.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId, mode: 'live' } })).json<{ key: string }>()
  const { token } = await mint(app, key)
  const chat = (await app.inject({ method: 'POST', url: '/v1/chats', headers: as(token), payload: {} })).json<{ id: string }>()
  const stream = () => app.inject({ method: 'POST', url: `/v1/chats/${chat.id}/stream`, headers: as(token), payload: { content: 'Tell me a story', model: 'gpt-4o-mini' } })

  const done = (await stream()).body.split('\n\n').find((frame) => frame.startsWith('event: done'))
  const data = JSON.parse((done as string).split('data: ')[1] as string) as { usage: { costMicroUsd: number }, costCents: number }
  t.equal(data.usage.costMicroUsd, withMarkup(costMicroUsd(gpt, 1200, 300), 40), '360 µUSD at list price, 504 with the markup')
  t.equal(data.usage.costMicroUsd, 504)

  cut = true
  t.match((await stream()).body, /event: error/)
  const { rows } = await app.store.query<{ charged_micro_usd: string, estimated: boolean, billed: boolean }>('SELECT charged_micro_usd, estimated, billed FROM usage_ledger WHERE user_id = $1 ORDER BY id', [userId])
  t.equal(rows.length, 2)
  t.match(rows[1], { estimated: true, billed: true }, 'the cut stream is charged, counted by us')
  t.ok(Number(rows[1]?.charged_micro_usd) > 0, 'never zero for a prompt that was sent')
  const balance = (await get(app, token, '/v1/billing/balance')).json<{ balanceMicroUsd: number }>()
  t.equal(balance.balanceMicroUsd, 10_000 - 504 - Number(rows[1]?.charged_micro_usd), 'the balance moved by exactly the two charges')
})
