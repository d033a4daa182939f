/**
 * Metadata stripped without decoding: the image's own bytes are kept, every segment or chunk that is not needed to
 * draw it is dropped. An allowlist, not a blocklist: EXIF (with GPS and thumbnails), XMP, IPTC, comments, JFIF
 * thumbnails, maker trailers after the end of a JPEG and PNG text chunks all go, and so does anything nobody has named yet.
 * Each answers the parts kept, in order (views of the input, no copy), or null when the bytes are not a whole,
 * well-formed file of the format (the caller decodes them instead, which tells); `joinParts` makes them one buffer.
 */

/** JPEG markers kept as they are (with SOS): frame headers SOF0–15 but JPG, Huffman and arithmetic tables, DQT, DNL, DRI. */
const JPEG_TABLES = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xdb, 0xdc, 0xdd])
const SOS = 0xda
const EOI = 0xd9
/** APP segments kept when they start with these identifiers: the colour profile (APP2), Adobe's colour transform (APP14). */
const JPEG_APPS: Record<number, Buffer> = {
  0xe2: Buffer.from('ICC_PROFILE\0', 'latin1'),
  0xee: Buffer.from('Adobe', 'latin1')
}
const APP0 = 0xe0
const JFIF = Buffer.from('JFIF\0', 'latin1')
/** The JFIF header before its thumbnail's size: identifier, version, density unit, X and Y density (12 bytes). */
const JFIF_HEADER = 12

/**
 * A JFIF APP0 segment without its thumbnail (which may show the picture as it was before an edit or a crop); null
 * when the segment is not JFIF.
 */
function jfifWithoutThumbnail (segment: Buffer): Buffer | null {
  if (segment.length < 4 + JFIF_HEADER + 2 || !segment.subarray(4, 4 + JFIF.length).equals(JFIF)) return null
  const header = Buffer.from(segment.subarray(0, 4 + JFIF_HEADER + 2))
  header.writeUInt16BE(JFIF_HEADER + 4, 2)
  header[4 + JFIF_HEADER] = 0
  header[4 + JFIF_HEADER + 1] = 0
  return header
}

const startsWith = (segment: Buffer, id: Buffer | undefined) => id !== undefined && segment.subarray(4, 4 + id.length).equals(id)

/** The parts kept as one buffer: the input itself when they are all of it, in place (nothing dropped, nothing copied). */
export function joinParts (parts: Buffer[], whole: Buffer): Buffer {
  let at = whole.byteOffset
  for (const part of parts) {
    if (part.buffer !== whole.buffer || part.byteOffset !== at) return Buffer.concat(parts)
    at += part.length
  }
  return at === whole.byteOffset + whole.length ? whole : Buffer.concat(parts)
}

/** A JPEG with only what decoding needs, ending at its EOI (anything after it is cut); null if malformed or truncated. */
export function stripJpeg (bytes: Buffer): Buffer[] | null {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return null
  const kept: Buffer[] = [bytes.subarray(0, 2)]
  let at = 2
  for (;;) {
    // Markers may be padded with 0xFF fill bytes.
    while (bytes[at] === 0xff && bytes[at + 1] === 0xff) at++
    if (at + 2 > bytes.length || bytes[at] !== 0xff) return null
    const marker = bytes[at + 1] as number
    if (marker === EOI) {
      kept.push(bytes.subarray(at, at + 2))
      return kept
    }
    if (at + 4 > bytes.length) return null
    const end = at + 2 + bytes.readUInt16BE(at + 2)
    if (end > bytes.length || end < at + 4) return null
    const segment = bytes.subarray(at, end)
    if (JPEG_TABLES.has(marker) || marker === SOS || startsWith(segment, JPEG_APPS[marker])) kept.push(segment)
    const jfif = marker === APP0 ? jfifWithoutThumbnail(segment) : null
    if (jfif !== null) kept.push(jfif)
    at = end
    if (marker !== SOS) continue
    // Entropy-coded data: a 0xFF in it is followed by 0x00 (a stuffed byte) or a restart marker; anything else ends it.
    let next = at
    for (;;) {
      next = bytes.indexOf(0xff, next)
      if (next === -1 || next + 1 >= bytes.length) return null
      const after = bytes[next + 1] as number
      if (after === 0x00 || (after >= 0xd0 && after <= 0xd7)) {
        next += 2
        continue
      }
      if (after === 0xff) {
        next += 1
        continue
      }
      break
    }
    kept.push(bytes.subarray(at, next))
    at = next
  }
}

/** PNG chunks kept: the critical ones, transparency, colour (gamma, chromaticities, profile, sRGB, CICP), significant bits, pixel size. */
const PNG_KEPT = new Set(['IHDR', 'PLTE', 'IDAT', 'IEND', 'tRNS', 'cHRM', 'gAMA', 'iCCP', 'sBIT', 'sRGB', 'cICP', 'pHYs'])

/** A PNG with only the chunks needed to draw it, ending at IEND; null if malformed or truncated. */
export function stripPng (bytes: Buffer): Buffer[] | null {
  const kept: Buffer[] = [bytes.subarray(0, 8)]
  let at = 8
  let first = true
  for (;;) {
    if (at + 12 > bytes.length) return null
    const length = bytes.readUInt32BE(at)
    const type = bytes.toString('latin1', at + 4, at + 8)
    const end = at + 12 + length
    if (end > bytes.length || (first && type !== 'IHDR')) return null
    first = false
    if (PNG_KEPT.has(type)) kept.push(bytes.subarray(at, end))
    if (type === 'IEND') return kept
    at = end
  }
}
