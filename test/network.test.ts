import { http, HttpResponse } from 'msw'
import t from 'tap'
import { interceptNetwork } from './network.js'

t.test('a provider request without a handler fails instead of reaching the network', async (t) => {
  interceptNetwork(t)
  await t.rejects(fetch('https://api.openai.com/v1/models'))
})

t.test('handled requests answer with the handler and are recorded', async (t) => {
  const { seen } = interceptNetwork(t, http.post('https://api.remove.bg/v1.0/removebg', () => HttpResponse.json({ ok: true })))
  const res = await fetch('https://api.remove.bg/v1.0/removebg', { method: 'POST', body: 'x' })
  t.same(await res.json(), { ok: true })
  t.equal(seen.length, 1)
  t.equal(seen[0]?.url, 'https://api.remove.bg/v1.0/removebg')
  t.equal(await seen[0]?.text(), 'x')
})
