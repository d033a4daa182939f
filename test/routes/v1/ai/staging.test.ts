import sharp from 'sharp'
import t from 'tap'
import { build, mint, userWithKey } from '../../../helper.js'

t.test('GET /v1/ai/staging/styles lists the active styles; previews are public PNGs', async (t) => {
  const { app } = await build(t)
  const { key } = await userWithKey(app, { mode: 'test', plan: 'free' })
  const { token } = await mint(app, key)
  const res = await app.inject({ url: '/v1/ai/staging/styles', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 200)
  const { data } = res.json<{ data: Array<{ id: string, previewImageUrl: string }> }>()
  t.same(data.map((s) => s.id), ['modern_luxury', 'classic_elegance', 'scandinavian', 'industrial_loft', 'coastal'])
  t.notMatch(res.body, /promptTemplate|Keep every wall/, 'no prompt in the answer')
  t.equal((await app.inject({ url: '/v1/ai/staging/styles' })).statusCode, 401)

  const preview = await app.inject({ url: (data[0] as { previewImageUrl: string }).previewImageUrl })
  t.equal(preview.statusCode, 200, 'no credential needed')
  t.match(preview.headers, { 'content-type': 'image/png', 'cache-control': 'public, max-age=86400', 'x-content-type-options': 'nosniff' })
  t.match(await sharp(preview.rawPayload).metadata(), { format: 'png', width: 480 })
  t.equal((await app.inject({ url: '/v1/ai/staging/styles/no_such_style/preview.png' })).json<{ error: { code: string } }>().error.code, 'NOT_FOUND')
  t.equal((await app.inject({ url: '/v1/ai/staging/styles/Bad-Id/preview.png' })).statusCode, 400)
})
