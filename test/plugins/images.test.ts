import { crc32 } from 'node:zlib'
import sharp from 'sharp'
import t from 'tap'
import { createGate, finishImage, prepareImage, sniffType } from '../../plugins/images.js'

t.test('sniffType reads magic bytes only', async (t) => {
  const png = await sharp({ create: { width: 2, height: 2, channels: 3, background: 'red' } }).png().toBuffer()
  const jpeg = await sharp(png).jpeg().toBuffer()
  const webp = await sharp(png).webp().toBuffer()
  t.same([sniffType(png), sniffType(jpeg), sniffType(webp)], ['png', 'jpeg', 'webp'])
  t.equal(sniffType(Buffer.from('RIFF0000WAVEfmt ')), null, 'RIFF that is not WebP')
  t.equal(sniffType(Buffer.from('GIF89a')), null)
  t.equal(sniffType(Buffer.alloc(0)), null)
})

t.test('a PNG signature over garbage is INVALID_IMAGE', async (t) => {
  const fake = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from('not a chunk at all')])
  await t.rejects(prepareImage(fake), { code: 'INVALID_IMAGE' })
})

t.test('WebP input stays WebP, metadata-free', async (t) => {
  const webp = await sharp({ create: { width: 8, height: 4, channels: 3, background: 'blue' } }).webp().withMetadata({ exif: { IFD0: { Copyright: 'CANARY' } } }).toBuffer()
  const prepared = await prepareImage(webp)
  t.same([prepared.type, prepared.width, prepared.height], ['webp', 8, 4])
  t.equal((await sharp(Buffer.from(await prepared.blob.arrayBuffer())).metadata()).exif, undefined)
})

t.test('finishImage: resizes to the input, masks have one channel, non-images are PROVIDER_ERROR', async (t) => {
  const small = await sharp({ create: { width: 10, height: 5, channels: 4, background: { r: 1, g: 2, b: 3, alpha: 0.5 } } }).png().toBuffer()
  const cut = await sharp(await finishImage(small, { width: 20, height: 10, output: 'cutout', format: 'png' })).metadata()
  t.same([cut.width, cut.height, cut.hasAlpha], [20, 10, true])
  const grey = await sharp({ create: { width: 20, height: 10, channels: 3, background: 'white' } }).png().toBuffer()
  const mask = await sharp(await finishImage(grey, { width: 20, height: 10, output: 'mask', format: 'png' })).metadata()
  t.equal(mask.channels, 1)
  await t.rejects(finishImage(Buffer.from('<html>error</html>'), { width: 1, height: 1, output: 'cutout', format: 'png' }), { code: 'PROVIDER_ERROR' })
})

t.test('finishImage passes a PNG cut-out of the right size on as its own bytes (without text chunks), and decodes anything else', async (t) => {
  const raw = Buffer.alloc(16 * 8 * 4)
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 31) % 256
  const cutout = await sharp(raw, { raw: { width: 16, height: 8, channels: 4 } }).png({ compressionLevel: 1 }).toBuffer()
  const iend = cutout.length - 12
  const data = Buffer.from('Comment\0CANARY-PNG', 'latin1')
  const text = Buffer.concat([Buffer.alloc(4), Buffer.from('tEXt'), data, Buffer.alloc(4)])
  text.writeUInt32BE(data.length, 0)
  text.writeUInt32BE(crc32(text.subarray(4, 8 + data.length)), 8 + data.length)
  const withText = Buffer.concat([cutout.subarray(0, iend), text, cutout.subarray(iend)])
  t.same(await finishImage(withText, { width: 16, height: 8, output: 'cutout', format: 'png' }), cutout, 'the same bytes, the text chunk gone')
  const resized = await finishImage(cutout, { width: 32, height: 16, output: 'cutout', format: 'png' })
  t.same([(await sharp(resized).metadata()).width], [32], 'another size is resized')
  const truncated = cutout.subarray(0, cutout.length - 12)
  const repaired = await finishImage(truncated, { width: 16, height: 8, output: 'cutout', format: 'png' })
  t.same(repaired.subarray(-8).toString('latin1', 0, 4), 'IEND', 'a PNG without its end is decoded and written whole')
  t.same(await sharp(repaired).raw().toBuffer(), raw, 'with the same pixels')
})

t.test('the gate lets N jobs run at once and queues the rest, also after a failure', async (t) => {
  const gate = createGate(1)
  const order: string[] = []
  let release: () => void = () => {}
  const first = gate(async () => { order.push('first start'); await new Promise<void>((resolve) => { release = resolve }); order.push('first end') })
  const second = gate(async () => { order.push('second'); throw new Error('boom') })
  const third = gate(async () => { order.push('third'); return 3 })
  await new Promise((resolve) => setImmediate(resolve))
  t.same(order, ['first start'])
  release()
  await first
  await t.rejects(second, { message: 'boom' })
  t.equal(await third, 3)
  t.same(order, ['first start', 'first end', 'second', 'third'])
})

t.test('with maxWait, a job that waited too long fails and leaves the queue; the others keep their order', async (t) => {
  const gate = createGate(1, { ms: 30, error: () => new Error('busy') })
  let release: () => void = () => {}
  const first = gate(() => new Promise<void>((resolve) => { release = resolve }))
  const late = gate(async () => 'never')
  await t.rejects(late, { message: 'busy' }, 'no turn within 30 ms')
  const next = gate(async () => 'next')
  release()
  await first
  t.equal(await next, 'next', 'the slot the late job left goes to the next one')
  t.equal(await gate(async () => 'again'), 'again', 'and comes back free')
})
