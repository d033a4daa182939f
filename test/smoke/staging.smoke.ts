import { setTimeout as sleep } from 'node:timers/promises'
import sharp from 'sharp'
import t from 'tap'
import { fileFrom } from '../../clients/typescript/src/index.js'
import { call, expectError, mintToken, refused, send, smokeClient } from './client.js'

/** A small room-like JPEG: a wall, a floor and a window. */
const room = () => sharp(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="480" height="320"><rect width="480" height="200" fill="#e9e4dc"/><rect y="200" width="480" height="120" fill="#b08d6a"/><rect x="180" y="40" width="120" height="110" fill="#cfe3f5"/></svg>')).jpeg().toBuffer()

t.test('virtual staging: submit → 202, poll to completed, the signed link reads a JPEG; batch, list, delete; bad input refused', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const image = await fileFrom(await room(), { filename: 'room.jpg' })
  const { data: created, response } = await portal.POST('/v1/ai/stagings', { body: { image, style: 'scandinavian', qualityMode: 'standard' } })
  t.equal(response.status, 202)
  t.equal(response.headers.get('location'), `/v1/ai/stagings/${created.id}`)
  const byId = { params: { path: { id: created.id } } }
  let staging = created
  for (let i = 0; i < 240 && (staging.status === 'queued' || staging.status === 'processing'); i++) {
    await sleep(250)
    staging = (await portal.GET('/v1/ai/stagings/{id}', byId)).data
  }
  t.equal(staging.status, 'completed', 'a test-mode staging completes within a minute')
  // The signed link needs no token (an <img> tag reads it).
  const file = await send({ path: staging.result?.stagedImageUrl as string })
  t.equal(file.status, 200)
  t.match(file.contentType, /^image\/jpeg/)
  const { data: batch } = await portal.POST('/v1/ai/stagings/batches', { body: { images: [image], style: 'scandinavian', qualityMode: 'standard' } })
  await portal.GET('/v1/ai/stagings/batches/{id}', { params: { path: { id: batch.id } } })
  const { data: listed } = await portal.GET('/v1/ai/stagings', { params: { query: { batchId: batch.id } } })
  t.equal(listed.data.length, 1)
  await portal.DELETE('/v1/ai/stagings/{id}', byId)
  await refused(t, portal.GET('/v1/ai/stagings/{id}', byId), 404, 'NOT_FOUND')
  await refused(t, portal.POST('/v1/ai/stagings', { body: { image, style: 'no_such_style' } }), 400, 'VALIDATION_ERROR')
  // A typed client cannot leave out the image: the bare form is sent as an app that forgot it would.
  const form = new FormData()
  form.append('style', 'scandinavian')
  expectError(t, await call(t, 'createStaging', 400, { method: 'POST', path: '/v1/ai/stagings', token: await mintToken(t), form }), 'VALIDATION_ERROR')
  await refused(t, portal.GET('/v1/ai/stagings/batches/{id}', { params: { path: { id: 'bat_0000000000000000' } } }), 404, 'NOT_FOUND')
  await refused(t, smokeClient(t).GET('/v1/ai/stagings'), 401, 'UNAUTHENTICATED')
})
