import t from 'tap'
import { call, contract, expectError, settings, smokeClient } from './client.js'

t.test('liveness and readiness', async (t) => {
  const anonymous = smokeClient(t)
  const { data: live } = await anonymous.GET('/health/live')
  t.equal(live.status, 'ok')
  const { data: ready } = await anonymous.GET('/health/ready')
  t.equal(ready.status, 'ready')
  t.equal(ready.checks.database?.status, 'ok', 'the database answers')
})

t.test('the deployment serves exactly this contract, and Swagger UI over it', async (t) => {
  const served = await fetch(`${settings().baseUrl}/openapi.json`)
  t.equal(served.status, 200)
  t.same(await served.json(), contract.document, '/openapi.json is the committed openapi/openapi.json (a changed route or schema fails here)')
  const docs = await fetch(`${settings().baseUrl}/docs`, { redirect: 'follow' })
  t.equal(docs.status, 200)
  t.match(docs.headers.get('content-type'), /text\/html/)
  t.match(await docs.text(), /swagger/i)
})

t.test('the feature catalog discloses every feature, with the sandbox for test mode', async (t) => {
  const { data: manifest } = await smokeClient(t).GET('/v1/ai/features')
  t.same(manifest.features.map((f) => f.id).sort(), ['background-removal', 'chat', 'openai-compatible', 'risk-scan', 'settings-assistant', 'virtual-staging'])
  for (const feature of manifest.features) {
    t.ok(feature.sends.length > 0, `${feature.id} declares what it sends`)
    t.ok(feature.providers.some((p) => p.id === 'sandbox' && p.mode === 'test' && p.configured), `${feature.id} has the test-mode sandbox`)
  }
})

t.test('an unknown route is NOT_FOUND in the envelope', async (t) => {
  const sent = await call(t, null, 404, { path: '/v1/ai/no-such-feature' })
  t.same(contract.checkComponent('ErrorResponse', sent.json), [])
  expectError(t, sent, 'NOT_FOUND')
})
