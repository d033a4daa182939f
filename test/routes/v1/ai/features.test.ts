import t from 'tap'
import { FEATURE_IDS, FEATURES } from '../../../../plugins/features.js'
import { build } from '../../../helper.js'

t.test('GET /v1/ai/features: the disclosure manifest from the registry, without authentication', async (t) => {
  const { app } = await build(t)
  const res = await app.inject({ url: '/v1/ai/features' })
  t.equal(res.statusCode, 200)
  const { features } = res.json()
  t.same(features.map((f: { id: string }) => f.id), FEATURE_IDS)
  const assistant = features[0]
  t.same(assistant.sends, FEATURES['settings-assistant'].sends)
  t.same(assistant.providers.map((p: { id: string, mode: string, configured: boolean }) => [p.id, p.mode, p.configured]),
    [['openai', 'live', false], ['sandbox', 'test', true]], 'no key: OpenAI is listed as not configured')
  t.same(features[1].providers.map((p: { id: string }) => p.id), ['removebg', 'sandbox'])
  t.match(features[1].sends, [{ field: 'image', note: /without its metadata \(EXIF with GPS and camera, XMP, IPTC/ }, { field: 'output' }])
})

t.test('the manifest follows the deployment: configured providers and the fallback order', async (t) => {
  const { app } = await build(t, { env: { OPENAI_API_KEY: 'sk-x', BG_REMOVAL_PROVIDERS: 'rembg,removebg', REMBG_URL: 'http://127.0.0.1:7000' } })
  const { features } = (await app.inject({ url: '/v1/ai/features' })).json()
  t.match(features[0].providers[0], { id: 'openai', configured: true, location: 'external' })
  t.same(features[1].providers.map((p: { id: string, configured: boolean }) => [p.id, p.configured]), [['rembg', true], ['removebg', false], ['sandbox', true]])
  t.notOk(JSON.stringify(features).includes('sk-x'), 'no key in the manifest')
})
