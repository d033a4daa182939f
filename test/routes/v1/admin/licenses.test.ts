import t from 'tap'
import { adminHeaders, build, newUserId } from '../../../helper.js'

t.test('PUT then GET a license; the change is audited with what it was before', async (t) => {
  const { app } = await build(t)
  const userId = newUserId()
  const missing = await app.inject({ url: `/v1/admin/licenses/${userId}`, headers: adminHeaders })
  t.equal(missing.statusCode, 404)
  t.equal(missing.json().error.code, 'NOT_FOUND')

  const put = await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: 'free' } })
  t.equal(put.statusCode, 200)
  t.match(put.json(), { userId, plan: 'free', status: 'active', validUntil: null, updatedAt: String })
  const until = '2030-01-01T00:00:00.000Z'
  await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: 'team', status: 'suspended', validUntil: until } })
  const got = await app.inject({ url: `/v1/admin/licenses/${userId}`, headers: adminHeaders })
  t.match(got.json(), { userId, plan: 'team', status: 'suspended', validUntil: until })

  const audit = await app.inject({ url: `/v1/admin/audit?target=user:${userId}&action=license.changed`, headers: adminHeaders })
  t.match(audit.json().events, [
    { actor: 'admin', outcome: 'ok', details: { plan: 'team', status: 'suspended', validUntil: until, previous: { plan: 'free', status: 'active', validUntil: null } } },
    { actor: 'admin', details: { plan: 'free', previous: null } }
  ])
})

t.test('an unknown plan or a bad date is a VALIDATION_ERROR', async (t) => {
  const { app } = await build(t)
  const userId = newUserId()
  const plan = await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: 'platinum' } })
  t.equal(plan.statusCode, 400)
  t.match(plan.json().error, { code: 'VALIDATION_ERROR', message: 'This plan is not configured: the plans are free, pro, team.', details: { fields: [{ path: '/plan' }] } })
  const date = await app.inject({ method: 'PUT', url: `/v1/admin/licenses/${userId}`, headers: adminHeaders, payload: { plan: 'pro', validUntil: 'tomorrow' } })
  t.equal(date.statusCode, 400)
})
