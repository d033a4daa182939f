import { crc32 } from 'node:zlib'
import sharp from 'sharp'
import t from 'tap'
import { joinParts, stripJpeg, stripPng } from '../../plugins/image-metadata.js'
import { prepareImage } from '../../plugins/images.js'

const CANARY = 'CANARY-META-5Y1K'
const ascii = (s: string) => Buffer.from(s, 'latin1')

/** A JPEG segment: marker, length, payload. */
const segment = (marker: number, payload: Buffer) => {
  const head = Buffer.from([0xff, marker, 0, 0])
  head.writeUInt16BE(payload.length + 2, 2)
  return Buffer.concat([head, payload])
}
/** A PNG chunk with its CRC. */
const chunk = (type: string, data: Buffer) => {
  const head = Buffer.alloc(8)
  head.writeUInt32BE(data.length, 0)
  head.write(type, 4, 'latin1')
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(Buffer.concat([ascii(type), data])), 0)
  return Buffer.concat([head, data, crc])
}

/** A photo-like picture (noise, so a re-encode would show) as raw pixels. */
const pixels = (width: number, height: number) => {
  const data = Buffer.alloc(width * height * 3)
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919) % 251
  return sharp(data, { raw: { width, height, channels: 3 } })
}
const decoded = async (bytes: Buffer) => sharp(bytes).raw().toBuffer()

t.test('JPEG: EXIF with GPS, XMP, IPTC, comments, unknown APPs and a trailer after EOI go; the pixels are the same bytes', async (t) => {
  for (const progressive of [false, true]) {
    const jpeg = await pixels(64, 48).jpeg({ quality: 90, progressive }).withMetadata({
      exif: { IFD0: { Copyright: CANARY, Artist: CANARY }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '52/1 31/1 0/1' } }
    }).withIccProfile('p3').withXmp(`<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>${CANARY}</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>`).toBuffer()
    // Segments sharp does not write: a JFIF header with a thumbnail (4×4 RGB, the canary in its pixels), one cut short,
    // a comment, IPTC in Photoshop's APP13, a JFXX extension, a maker APP; 0xFF fill before one; a trailer.
    const thumbnail = Buffer.alloc(48, ascii(CANARY))
    const extra = Buffer.concat([segment(0xe0, Buffer.concat([ascii('JFIF\0'), Buffer.from([1, 2, 1, 0, 72, 0, 72, 4, 4]), thumbnail])), segment(0xe0, ascii('JFIF\0')),
      segment(0xfe, ascii(`comment ${CANARY}`)), segment(0xed, ascii(`Photoshop 3.0\0${CANARY}`)), segment(0xe0, ascii(`JFXX\0${CANARY}`)),
      Buffer.from([0xff, 0xff]), segment(0xe9, ascii(CANARY))])
    const tampered = Buffer.concat([jpeg.subarray(0, 2), extra, jpeg.subarray(2), ascii(`trailer ${CANARY}`)])
    const meta = await sharp(tampered).metadata()
    t.ok(meta.exif !== undefined && meta.xmp !== undefined && meta.icc !== undefined, 'the input has them all')

    const stripped = joinParts(stripJpeg(tampered) as Buffer[], tampered)
    t.notOk(stripped.includes(CANARY), `progressive ${progressive}: no canary left`)
    const after = await sharp(stripped).metadata()
    t.same([after.exif, after.xmp, after.iptc, after.comments], [undefined, undefined, undefined, undefined])
    t.ok(after.icc !== undefined, 'the colour profile stays (it is how the colours are drawn)')
    t.same(await decoded(stripped), await decoded(jpeg), 'the same pixels: nothing was re-encoded')
    t.equal(stripped.at(-1), 0xd9, 'it ends at EOI')
    t.same(stripped.subarray(2, 20), Buffer.concat([Buffer.from([0xff, 0xe0, 0, 16]), ascii('JFIF\0'), Buffer.from([1, 2, 1, 0, 72, 0, 72, 0, 0])]), 'the JFIF header stays, its thumbnail gone')
  }
})

t.test('JPEG: a scan with stuffed bytes, restart markers and fill keeps going to EOI; anything malformed or cut is null', async (t) => {
  const sos = segment(0xda, Buffer.from([1, 1, 0, 0, 63, 0]))
  const scan = Buffer.from([0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56, 0xff, 0xff, 0xd7, 0x78])
  const whole = Buffer.concat([Buffer.from([0xff, 0xd8]), segment(0xdb, Buffer.alloc(65)), segment(0xc0, Buffer.alloc(15)), sos, scan, Buffer.from([0xff, 0xd9])])
  t.equal(joinParts(stripJpeg(whole) as Buffer[], whole), whole, 'kept whole, the very buffer: every part of it is needed')
  t.equal(stripJpeg(whole.subarray(0, whole.length - 2)), null, 'no EOI: truncated')
  t.equal(stripJpeg(whole.subarray(0, whole.length - 1)), null, 'a lone 0xFF at the end')
  t.equal(stripJpeg(Buffer.concat([whole.subarray(0, 2), Buffer.from([0xff])])), null, 'a marker cut in two')
  t.equal(stripJpeg(Buffer.concat([whole.subarray(0, 2), Buffer.from([0xff, 0xdb, 0x00])])), null, 'a length cut in two')
  t.equal(stripJpeg(Buffer.concat([whole.subarray(0, 2), Buffer.from([0xff, 0xdb, 0x00, 0x40, 0x00])])), null, 'a segment longer than the file')
  t.equal(stripJpeg(Buffer.concat([whole.subarray(0, 2), Buffer.from([0xff, 0xdb, 0x00, 0x01, 0x00])])), null, 'a length shorter than itself')
  t.equal(stripJpeg(Buffer.concat([whole.subarray(0, 2), Buffer.from([0x00, 0x00, 0x00, 0x00])])), null, 'no marker where one must be')
  t.equal(stripJpeg(ascii('not a jpeg')), null)
  t.equal(stripJpeg(Buffer.from([0xff, 0xd8])), null, 'too short')
})

t.test('PNG: text, EXIF and time chunks and unknown ones go, colour and transparency stay; the pixels are the same', async (t) => {
  const png = await pixels(32, 16).png().withIccProfile('srgb').toBuffer()
  const iend = png.length - 12
  const extra = Buffer.concat([chunk('tEXt', ascii(`Author\0${CANARY}`)), chunk('iTXt', ascii(`Comment\0\0\0\0\0${CANARY}`)), chunk('eXIf', ascii(`MM\0*${CANARY}`)),
    chunk('tIME', Buffer.alloc(7)), chunk('prVt', ascii(CANARY)), chunk('tRNS', Buffer.from([0, 1, 0, 2, 0, 3]))])
  const tampered = Buffer.concat([png.subarray(0, iend), extra, png.subarray(iend), ascii(`after IEND ${CANARY}`)])
  const stripped = joinParts(stripPng(tampered) as Buffer[], tampered)
  t.notOk(stripped.includes(CANARY), 'no canary left')
  t.ok(stripped.includes(ascii('iCCP')) && stripped.includes(ascii('tRNS')), 'the profile and the transparency stay')
  t.same(await decoded(stripped), await decoded(tampered), 'the same pixels')
  t.equal(joinParts(stripPng(png) as Buffer[], png), png, 'nothing to drop: the very buffer, not a copy')
  const inPlace = Buffer.concat([ascii('before'), png]).subarray(6)
  t.equal(joinParts(stripPng(inPlace) as Buffer[], inPlace), inPlace, 'also a view into a larger buffer')
  t.same(joinParts(stripPng(tampered) as Buffer[], tampered).length, png.length + 12 + 6, 'dropped chunks: a copy of the rest (tRNS kept)')
  const trailing = Buffer.concat([png, ascii(CANARY)])
  t.same(joinParts(stripPng(trailing) as Buffer[], trailing), png, 'only bytes after IEND: the file without them')
  t.equal(stripPng(png.subarray(0, png.length - 4)), null, 'cut short')
  t.equal(stripPng(Buffer.concat([png.subarray(0, 8), chunk('IDAT', Buffer.alloc(4)), png.subarray(8)])), null, 'IHDR not first')
  const lying = Buffer.from(png)
  lying.writeUInt32BE(0x7fffffff, 8)
  t.equal(stripPng(lying), null, 'a chunk longer than the file')
})

t.test('prepareImage keeps an upright sRGB JPEG or PNG as its own bytes, and decodes what must be rotated, converted or repaired', async (t) => {
  const clean = await pixels(40, 30).jpeg().toBuffer()
  const kept = Buffer.from(await (await prepareImage(clean)).blob.arrayBuffer())
  t.same(kept, clean, 'nothing to strip: the very bytes')

  const rotated = await pixels(40, 30).jpeg().withMetadata({ orientation: 6, exif: { IFD0: { Copyright: CANARY } } }).toBuffer()
  const upright = await prepareImage(rotated)
  t.same([upright.width, upright.height], [30, 40], 'EXIF orientation 6 is applied (a decode)')
  const uprightBytes = Buffer.from(await upright.blob.arrayBuffer())
  t.notOk(uprightBytes.includes(CANARY))
  t.equal((await sharp(uprightBytes).metadata()).orientation, undefined)

  const cmyk = await pixels(40, 30).toColourspace('cmyk').jpeg().toBuffer()
  const converted = await prepareImage(cmyk)
  t.equal((await sharp(Buffer.from(await converted.blob.arrayBuffer())).metadata()).space, 'srgb', 'CMYK is converted to sRGB')

  // A standalone marker (TEM) the walk does not take: decoded and re-encoded, so a fresh, plain JPEG goes on.
  const odd = Buffer.concat([clean.subarray(0, 2), Buffer.from([0xff, 0x01]), clean.subarray(2)])
  t.equal(stripJpeg(odd), null)
  const reencoded = Buffer.from(await (await prepareImage(odd)).blob.arrayBuffer())
  t.notOk(reencoded.includes(Buffer.from([0xff, 0x01])), 'the decode path wrote a new file')
  t.same([(await sharp(reencoded).metadata()).width, reencoded.equals(clean)], [40, false])

  const truncated = clean.subarray(0, Math.floor(clean.length * 0.6))
  await t.rejects(prepareImage(truncated), { code: 'INVALID_IMAGE' }, 'a truncated JPEG is not passed on')
})
