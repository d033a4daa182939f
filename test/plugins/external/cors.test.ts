import t from 'tap'
import { build } from '../../helper.js'

t.test('no cross-origin browser access unless CORS_ORIGINS lists the origin', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ url: '/health/live', headers: { origin: 'https://evil.example' } })
  t.equal(res.headers['access-control-allow-origin'], undefined)
})

t.test('a listed origin is allowed and sees the documented headers', async (t) => {
  const { app } = await build(t, { env: { CORS_ORIGINS: 'https://portal.example.com,https://admin.example.com' } })
  const res = await app.inject({ url: '/health/live', headers: { origin: 'https://admin.example.com' } })
  t.equal(res.headers['access-control-allow-origin'], 'https://admin.example.com')
  t.match(res.headers['access-control-expose-headers'], /X-Request-Id/)
  const other = await app.inject({ url: '/health/live', headers: { origin: 'https://evil.example' } })
  t.equal(other.headers['access-control-allow-origin'], undefined)
})
