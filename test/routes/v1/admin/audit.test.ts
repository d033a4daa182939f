import t from 'tap'
import { adminHeaders, build, newUserId } from '../../../helper.js'

t.test('audit events page newest first with a cursor', async (t) => {
  const { app } = await build(t)
  const userId = newUserId()
  for (const plan of ['free', 'pro', 'team', 'free', 'pro']) {
    await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan } })
  }
  const url = `/v1/admin/audit?target=user:${userId}&limit=2`
  const first = (await app.inject({ url, headers: adminHeaders })).json()
  t.same(first.events.map((e: { details: { plan: string } }) => e.details.plan), ['pro', 'free'])
  t.type(first.nextCursor, 'string')
  const second = (await app.inject({ url: `${url}&cursor=${first.nextCursor}`, headers: adminHeaders })).json()
  t.same(second.events.map((e: { details: { plan: string } }) => e.details.plan), ['team', 'pro'])
  const third = (await app.inject({ url: `${url}&cursor=${second.nextCursor}`, headers: adminHeaders })).json()
  t.same(third.events.map((e: { details: { plan: string } }) => e.details.plan), ['free'])
  t.equal(third.nextCursor, null)
  const all = (await app.inject({ url: '/v1/admin/audit', headers: adminHeaders })).json()
  t.ok(all.events.length >= 5)
})

t.test('bad filters are VALIDATION_ERROR', async (t) => {
  const { app } = await build(t)
  for (const query of ['limit=0', 'limit=201', 'cursor=abc', 'action=deleted', 'other=1']) {
    const res = await app.inject({ url: `/v1/admin/audit?${query}`, headers: adminHeaders })
    t.equal(res.statusCode, 400, query)
  }
})

t.test('the audit table is append-only', async (t) => {
  const { app, store } = await build(t)
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${newUserId()}`, headers: adminHeaders, payload: { plan: 'free' } })
  await t.rejects(store.query('DELETE FROM audit_events'), /append-only/)
  await t.rejects(store.query("UPDATE audit_events SET actor = 'someone'"), /append-only/)
})
