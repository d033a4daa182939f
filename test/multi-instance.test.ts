import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import sharp from 'sharp'
import t, { type Test } from 'tap'
import { adminHeaders, build, createTestStore, mint, multipart, newUserId } from './helper.js'

/**
 * Two instances sharing one PostgreSQL and one Redis, under one concurrent load split between them: the quota and
 * the per-minute limit hold for the user as a whole, not per instance.
 */
const REDIS_URL = `${process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'}/11`
const PLANS_FILE = join(mkdtempSync(join(tmpdir(), 'multi-plans-')), 'plans.json')
writeFileSync(PLANS_FILE, JSON.stringify({
  plans: {
    'tight-quota': { name: 'Tight quota', features: { 'background-removal': { quota: { limit: 30, period: 'day' }, rateLimitPerMinute: 100_000 } } },
    'tight-rate': { name: 'Tight rate', features: { 'background-removal': { quota: { limit: 1_000_000, period: 'day' }, rateLimitPerMinute: 25 } } },
    'staging-quota': { name: 'Staging quota', features: { 'virtual-staging': { quota: { limit: 5, period: 'month' }, rateLimitPerMinute: 100_000 } } },
    'small-balance': { name: 'Small balance', features: { chat: { quota: { limit: 100_000_000, period: 'month' }, rateLimitPerMinute: 100_000 } }, credits: { monthlyFreeCents: 0, markupPercent: 40 } }
  }
}))
const png = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#ffffff' } }).png().toBuffer()

function upload (app: FastifyInstance, token: string) {
  const body = multipart([{ name: 'image', value: png, filename: 'a.png', type: 'image/png' }])
  return app.inject({ method: 'POST', url: '/v1/ai/background-removal', headers: { authorization: `Bearer ${token}`, 'content-type': body.contentType }, payload: body.payload })
}

async function twoInstances (t: Test) {
  const { store, drop } = await createTestStore('postgres')
  t.teardown(drop)
  const env = { PLANS_FILE, REDIS_URL }
  const a = await build(t, { store, env })
  const b = await build(t, { store, env })
  return [a.app, b.app] as const
}

/** A user on `plan` with a test key, and a token from each instance. */
async function userOn (a: FastifyInstance, b: FastifyInstance, plan: string) {
  const userId = newUserId('multi')
  await a.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan } })
  const { key } = (await b.inject({ method: 'POST', url: '/v1/admin/keys', headers: adminHeaders, payload: { userId, mode: 'test' } })).json() as { key: string }
  return { userId, tokens: [(await mint(a, key)).token, (await mint(b, key)).token] as const }
}

const tally = (statuses: number[]) => statuses.reduce<Record<number, number>>((n, s) => ({ ...n, [s]: (n[s] ?? 0) + 1 }), {})

t.test('the quota holds across two instances under concurrent load', async (t) => {
  const [a, b] = await twoInstances(t)
  const { userId, tokens } = await userOn(a, b, 'tight-quota')
  const results = await Promise.all(Array.from({ length: 90 }, (_, i) => upload(i % 2 === 0 ? a : b, tokens[i % 2] as string)))
  t.same(tally(results.map((r) => r.statusCode)), { 200: 30, 402: 60 }, 'exactly the quota succeeds, the rest is QUOTA_EXCEEDED')
  const usage = (await a.inject({ url: `/v1/admin/usage?userId=${userId}&mode=test`, headers: adminHeaders })).json() as { features: Array<{ id: string, used: number, reserved: number }> }
  t.match(usage.features.find((f) => f.id === 'background-removal'), { used: 30, reserved: 0 })
})

t.test('credits hold across two instances: concurrent calls never overspend, and every charge adds up', async (t) => {
  const [a, b] = await twoInstances(t)
  const { userId, tokens } = await userOn(a, b, 'small-balance')
  // 20 cents: a chat call holds about 7 (the dearest fallback's reply limit) and is charged well under one.
  t.equal((await a.inject({ method: 'POST', url: `/v1/admin/credits/${userId}`, headers: adminHeaders, payload: { amountCents: 20, reason: 'race', mode: 'test' } })).statusCode, 201)
  const chats = await Promise.all(Array.from({ length: 24 }, async (_, i) => {
    const app = i % 2 === 0 ? a : b
    const res = await app.inject({ method: 'POST', url: '/v1/chats', headers: { authorization: `Bearer ${tokens[i % 2] as string}` }, payload: {} })
    return res.json<{ id: string }>().id
  }))
  const results = await Promise.all(chats.map((id, i) => (i % 2 === 0 ? a : b).inject({
    method: 'POST', url: `/v1/chats/${id}/messages`, headers: { authorization: `Bearer ${tokens[i % 2] as string}` }, payload: { content: `question ${i}`, model: 'gpt-4o-mini' }
  })))
  const statuses = tally(results.map((r) => r.statusCode))
  t.same(Object.keys(statuses).sort(), ['201', '402'], 'some are answered, the others refused for credits')
  t.ok(results.filter((r) => r.statusCode === 402).every((r) => r.json<{ error: { code: string } }>().error.code === 'INSUFFICIENT_CREDITS'))
  const answered = results.filter((r) => r.statusCode === 201).map((r) => r.json<{ usage: { costMicroUsd: number } }>().usage.costMicroUsd)
  const { rows } = await a.store.query<{ charged: string, calls: string }>('SELECT sum(charged_micro_usd) AS charged, count(*) AS calls FROM usage_ledger WHERE user_id = $1 AND billed', [userId])
  t.equal(Number(rows[0]?.calls), answered.length, 'one ledger row per answer')
  t.equal(Number(rows[0]?.charged), answered.reduce((sum, c) => sum + c, 0), 'the ledger sums to what the answers say')
  const balance = (await b.inject({ url: `/v1/admin/credits/${userId}?mode=test`, headers: adminHeaders })).json<{ balance: { balanceMicroUsd: number, lifetimeUsageCents: number } }>().balance
  t.equal(balance.balanceMicroUsd, 200_000 - Number(rows[0]?.charged), 'the balance is what was granted less what was charged')
  const { rows: accounts } = await a.store.query<{ purchased: string, reserved: string }>('SELECT purchased_micro_usd AS purchased, reserved_micro_usd AS reserved FROM credit_accounts WHERE user_id = $1', [userId])
  t.ok(Number(accounts[0]?.purchased) >= 0, 'never below zero')
  t.equal(Number(accounts[0]?.reserved), 0, 'nothing left held')
  t.equal((await a.store.query('SELECT 1 FROM credit_reservations WHERE user_id = $1', [userId])).rows.length, 0)
})

t.test('the per-minute limit holds across two instances sharing Redis', async (t) => {
  const [a, b] = await twoInstances(t)
  const { tokens } = await userOn(a, b, 'tight-rate')
  const results = await Promise.all(Array.from({ length: 60 }, (_, i) => upload(i % 2 === 0 ? a : b, tokens[i % 2] as string)))
  t.same(tally(results.map((r) => r.statusCode)), { 200: 25, 429: 35 }, 'exactly the limit succeeds, the rest is RATE_LIMITED')
  t.ok(results.filter((r) => r.statusCode === 429).every((r) => /^\d+$/.test(String(r.headers['retry-after']))), 'every refusal says when to retry')
})

t.test('stagings: three times the quota submitted at once over two instances, exactly the quota accepted and run', async (t) => {
  const [a, b] = await twoInstances(t)
  const { userId, tokens } = await userOn(a, b, 'staging-quota')
  const photo = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#e9e4dc' } }).jpeg().toBuffer()
  const submit = (app: FastifyInstance, token: string) => {
    const body = multipart([{ name: 'style', value: 'scandinavian' }, { name: 'qualityMode', value: 'standard' }, { name: 'image', value: photo, filename: 'room.jpg', type: 'image/jpeg' }])
    return app.inject({ method: 'POST', url: '/v1/ai/stagings', headers: { authorization: `Bearer ${token}`, 'content-type': body.contentType }, payload: body.payload })
  }
  const results = await Promise.all(Array.from({ length: 15 }, (_, i) => submit(i % 2 === 0 ? a : b, tokens[i % 2] as string)))
  t.same(tally(results.map((r) => r.statusCode)), { 202: 5, 402: 10 }, 'exactly the quota is accepted')
  // Either instance's workers run them; each settles once.
  for (const res of results.filter((r) => r.statusCode === 202)) {
    for (;;) {
      const s = (await a.inject({ url: `/v1/ai/stagings/${res.json().id as string}`, headers: { authorization: `Bearer ${tokens[0]}` } })).json() as { status: string }
      if (s.status === 'completed') break
      t.not(s.status, 'failed')
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  const usage = (await a.inject({ url: `/v1/admin/usage?userId=${userId}&mode=test`, headers: adminHeaders })).json() as { features: Array<{ id: string, used: number, reserved: number }> }
  t.match(usage.features.find((f) => f.id === 'virtual-staging'), { used: 5, reserved: 0 })
})
