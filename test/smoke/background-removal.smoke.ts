import sharp from 'sharp'
import t from 'tap'
import { fileFrom } from '../../clients/typescript/src/index.js'
import { call, expectError, mintToken, refused, smokeClient } from './client.js'

const REMOVE = { method: 'POST', path: '/v1/ai/background-removal' }

/** A white photo with a red square: the sandbox keeps the square and clears the border-coloured background. */
async function photo (format: 'png' | 'jpeg', width = 64, height = 48) {
  const square = await sharp({ create: { width: 20, height: 20, channels: 3, background: '#d03030' } }).png().toBuffer()
  return sharp({ create: { width, height, channels: 3, background: '#ffffff' } }).composite([{ input: square, left: 22, top: 14 }]).toFormat(format).toBuffer()
}

const image = async (bytes: Buffer | string, type = 'image/png') => await fileFrom(Buffer.from(bytes), { filename: 'layer.png', type })

t.test('a PNG comes back as a cut-out PNG of the same size, from the sandbox, with quota headers', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const { data: cutOut, response } = await portal.POST('/v1/ai/background-removal', { body: { image: await image(await photo('png')) }, parseAs: 'arrayBuffer' })
  t.equal(response.headers.get('content-type'), 'image/png')
  t.equal(response.headers.get('ai-provider'), 'sandbox')
  t.match(response.headers.get('x-quota-remaining'), /^[0-9]+$/)
  const bytes = Buffer.from(cutOut)
  const meta = await sharp(bytes).metadata()
  t.same([meta.width, meta.height, meta.channels], [64, 48, 4], 'same dimensions, with an alpha channel')
  const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true })
  const alphaAt = (x: number, y: number) => data[(y * info.width + x) * info.channels + 3]
  t.equal(alphaAt(0, 0), 0, 'the background is transparent')
  t.equal(alphaAt(32, 24), 255, 'the subject is kept')
})

t.test('a JPEG asked for as a WebP mask', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const { data: mask } = await portal.POST('/v1/ai/background-removal', { body: { image: await image(await photo('jpeg'), 'image/jpeg'), output: 'mask', format: 'webp' }, parseAs: 'blob' })
  t.equal(mask.type, 'image/webp')
  const meta = await sharp(Buffer.from(await mask.arrayBuffer())).metadata()
  t.same([meta.format, meta.width, meta.height], ['webp', 64, 48])
})

t.test('bad uploads get their documented codes', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const remove = async (file: File) => await portal.POST('/v1/ai/background-removal', { body: { image: file } })
  await refused(t, remove(await image('just some text, not an image', 'text/plain')), 415, 'UNSUPPORTED_MEDIA_TYPE')
  const png = await photo('png')
  await refused(t, remove(await image(png.subarray(0, 60))), 422, 'INVALID_IMAGE')
  // 6,000 × 5,000 = 30 megapixels of one colour: a small file, refused from its header.
  const huge = await sharp({ create: { width: 6000, height: 5000, channels: 3, background: '#ffffff' } }).png({ compressionLevel: 9 }).toBuffer()
  await refused(t, remove(await image(huge)), 422, 'IMAGE_TOO_LARGE')
  await refused(t, remove(await image(Buffer.concat([png, Buffer.alloc(12 * 1024 * 1024 + 1)]))), 413, 'PAYLOAD_TOO_LARGE')
  // What a typed client cannot send, raw: no image, an output the contract does not list, a JSON body.
  const token = await mintToken(t)
  const form = (fields: Record<string, string>, withImage: boolean) => {
    const data = new FormData()
    for (const [name, value] of Object.entries(fields)) data.append(name, value)
    if (withImage) data.append('image', new Blob([new Uint8Array(png)], { type: 'image/png' }), 'layer.png')
    return data
  }
  expectError(t, await call(t, 'removeBackground', 400, { ...REMOVE, token, form: form({ output: 'cutout' }, false) }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'removeBackground', 400, { ...REMOVE, token, form: form({ output: 'sticker' }, true) }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'removeBackground', 415, { ...REMOVE, token, body: { image: 'not multipart' } }), 'UNSUPPORTED_MEDIA_TYPE')
})

t.test('no token, or a token without the feature', async (t) => {
  const png = await image(await photo('png'))
  await refused(t, smokeClient(t).POST('/v1/ai/background-removal', { body: { image: png } }), 401, 'UNAUTHENTICATED')
  const other = smokeClient(t, await mintToken(t, ['settings-assistant']))
  await refused(t, other.POST('/v1/ai/background-removal', { body: { image: png } }), 403, 'NOT_ENTITLED')
})
