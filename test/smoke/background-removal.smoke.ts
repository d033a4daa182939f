import sharp from 'sharp'
import t from 'tap'
import { call, expectError, mintToken } from './client.js'

const REMOVE = { method: 'POST', path: '/v1/ai/background-removal' }

/** A white photo with a red square: the sandbox keeps the square and clears the border-coloured background. */
async function photo (format: 'png' | 'jpeg', width = 64, height = 48) {
  const square = await sharp({ create: { width: 20, height: 20, channels: 3, background: '#d03030' } }).png().toBuffer()
  return sharp({ create: { width, height, channels: 3, background: '#ffffff' } }).composite([{ input: square, left: 22, top: 14 }]).toFormat(format).toBuffer()
}

function form (image: Buffer | string | null, fields: Record<string, string> = {}, type = 'image/png') {
  const data = new FormData()
  for (const [name, value] of Object.entries(fields)) data.append(name, value)
  if (image !== null) data.append('image', new Blob([typeof image === 'string' ? image : new Uint8Array(image)], { type }), 'layer.png')
  return data
}

t.test('a PNG comes back as a cut-out PNG of the same size, from the sandbox, with quota headers', async (t) => {
  const token = await mintToken(t)
  const sent = await call(t, 'removeBackground', 200, { ...REMOVE, token, form: form(await photo('png')) })
  t.equal(sent.contentType, 'image/png')
  t.equal(sent.headers.get('ai-provider'), 'sandbox')
  t.match(sent.headers.get('x-quota-remaining'), /^[0-9]+$/)
  const meta = await sharp(sent.bytes).metadata()
  t.same([meta.width, meta.height, meta.channels], [64, 48, 4], 'same dimensions, with an alpha channel')
  const { data, info } = await sharp(sent.bytes).raw().toBuffer({ resolveWithObject: true })
  const alphaAt = (x: number, y: number) => data[(y * info.width + x) * info.channels + 3]
  t.equal(alphaAt(0, 0), 0, 'the background is transparent')
  t.equal(alphaAt(32, 24), 255, 'the subject is kept')
})

t.test('a JPEG asked for as a WebP mask', async (t) => {
  const token = await mintToken(t)
  const sent = await call(t, 'removeBackground', 200, { ...REMOVE, token, form: form(await photo('jpeg'), { output: 'mask', format: 'webp' }, 'image/jpeg') })
  t.equal(sent.contentType, 'image/webp')
  const meta = await sharp(sent.bytes).metadata()
  t.same([meta.format, meta.width, meta.height], ['webp', 64, 48])
})

t.test('bad uploads get their documented codes', async (t) => {
  const token = await mintToken(t)
  expectError(t, await call(t, 'removeBackground', 415, { ...REMOVE, token, form: form('just some text, not an image', {}, 'text/plain') }), 'UNSUPPORTED_MEDIA_TYPE')
  const png = await photo('png')
  expectError(t, await call(t, 'removeBackground', 422, { ...REMOVE, token, form: form(png.subarray(0, 60)) }), 'INVALID_IMAGE')
  // 6,000 × 5,000 = 30 megapixels of one colour: a small file, refused from its header.
  const huge = await sharp({ create: { width: 6000, height: 5000, channels: 3, background: '#ffffff' } }).png({ compressionLevel: 9 }).toBuffer()
  const tooLarge = await call(t, 'removeBackground', 422, { ...REMOVE, token, form: form(huge) })
  expectError(t, tooLarge, 'IMAGE_TOO_LARGE')
  const oversized = Buffer.concat([png, Buffer.alloc(12 * 1024 * 1024 + 1)])
  expectError(t, await call(t, 'removeBackground', 413, { ...REMOVE, token, form: form(oversized) }), 'PAYLOAD_TOO_LARGE')
  expectError(t, await call(t, 'removeBackground', 400, { ...REMOVE, token, form: form(null, { output: 'cutout' }) }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'removeBackground', 400, { ...REMOVE, token, form: form(png, { output: 'sticker' }) }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'removeBackground', 415, { ...REMOVE, token, body: { image: 'not multipart' } }), 'UNSUPPORTED_MEDIA_TYPE')
})

t.test('no token, or a token without the feature', async (t) => {
  const png = await photo('png')
  expectError(t, await call(t, 'removeBackground', 401, { ...REMOVE, form: form(png) }), 'UNAUTHENTICATED')
  const other = await mintToken(t, ['settings-assistant'])
  expectError(t, await call(t, 'removeBackground', 403, { ...REMOVE, token: other, form: form(png) }), 'NOT_ENTITLED')
})
