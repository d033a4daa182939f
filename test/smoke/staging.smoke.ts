import { setTimeout as sleep } from 'node:timers/promises'
import sharp from 'sharp'
import t from 'tap'
import { call, expectError, mintToken } from './client.js'

const SUBMIT = { method: 'POST', path: '/v1/ai/stagings' }

/** A small room-like JPEG: a wall, a floor and a window. */
const room = () => sharp(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="480" height="320"><rect width="480" height="200" fill="#e9e4dc"/><rect y="200" width="480" height="120" fill="#b08d6a"/><rect x="180" y="40" width="120" height="110" fill="#cfe3f5"/></svg>')).jpeg().toBuffer()

function form (image: Buffer | null, fields: Record<string, string>, field = 'image') {
  const data = new FormData()
  for (const [name, value] of Object.entries(fields)) data.append(name, value)
  if (image !== null) data.append(field, new Blob([new Uint8Array(image)], { type: 'image/jpeg' }), 'room.jpg')
  return data
}

t.test('virtual staging: submit → 202, poll to completed, the signed link reads a JPEG; batch, list, delete; bad input refused', async (t) => {
  const token = await mintToken(t)
  const photo = await room()
  const created = await call(t, 'createStaging', 202, { ...SUBMIT, token, form: form(photo, { style: 'scandinavian', qualityMode: 'standard' }) })
  const id = created.json.id as string
  t.equal(created.headers.get('location'), `/v1/ai/stagings/${id}`)
  let staging = created.json
  for (let i = 0; i < 240 && (staging.status === 'queued' || staging.status === 'processing'); i++) {
    await sleep(250)
    staging = (await call(t, 'getStaging', 200, { path: `/v1/ai/stagings/${id}`, token })).json
  }
  t.equal(staging.status, 'completed', 'a test-mode staging completes within a minute')
  const image = await call(t, 'getFile', 200, { path: staging.result.stagedImageUrl as string })
  t.match(image.contentType, /^image\/jpeg/)
  const batch = await call(t, 'createStagingBatch', 202, { method: 'POST', path: '/v1/ai/stagings/batches', token, form: form(photo, { style: 'scandinavian', qualityMode: 'standard' }, 'images') })
  await call(t, 'getStagingBatch', 200, { path: `/v1/ai/stagings/batches/${batch.json.id as string}`, token })
  const listed = await call(t, 'listStagings', 200, { path: `/v1/ai/stagings?batchId=${batch.json.id as string}`, token })
  t.equal(listed.json.data.length, 1)
  await call(t, 'deleteStaging', 204, { method: 'DELETE', path: `/v1/ai/stagings/${id}`, token })
  expectError(t, await call(t, 'getStaging', 404, { path: `/v1/ai/stagings/${id}`, token }), 'NOT_FOUND')
  expectError(t, await call(t, 'createStaging', 400, { ...SUBMIT, token, form: form(photo, { style: 'no_such_style' }) }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'createStaging', 400, { ...SUBMIT, token, form: form(null, { style: 'scandinavian' }) }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'getStagingBatch', 404, { path: '/v1/ai/stagings/batches/bat_0000000000000000', token }), 'NOT_FOUND')
  expectError(t, await call(t, 'listStagings', 401, { path: '/v1/ai/stagings' }), 'UNAUTHENTICATED')
})
