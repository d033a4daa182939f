/**
 * Text extraction of one uploaded document, run in a worker thread of the pool in plugins/documents (SPEC §13):
 * a hostile file may use this thread's time and its capped heap, never the service's.
 */
import mammoth from 'mammoth'
import { extractText, getDocumentProxy } from 'unpdf'
import yauzl from 'yauzl'
import { tidy, type ExtractResult, type ExtractTask, type UnreadableReason, type ZipLimits } from './text.js'

/** What pdf.js throws for a password it does not have, and for bytes that are not a PDF it can read. */
const PASSWORD = 'PasswordException'

class Unreadable extends Error {
  constructor (readonly reason: UnreadableReason) { super(reason) }
}

async function pdfText (task: ExtractTask): Promise<ExtractResult> {
  let pdf
  try {
    // No fonts or images are decoded for text; eval and worker fetches stay off.
    pdf = await getDocumentProxy(task.bytes, { verbosity: 0, disableFontFace: true, useSystemFonts: false, stopAtErrors: false, maxImageSize: 1 })
  } catch (err) {
    return { ok: false, reason: (err as Error).name === PASSWORD ? 'encrypted' : 'broken' }
  }
  try {
    const pages = pdf.numPages
    if (pages > task.maxPages) return { ok: false, reason: 'too-many-pages', pages }
    const { text } = await extractText(pdf, { mergePages: true })
    const clean = tidy(text)
    if (clean === '') return { ok: false, reason: 'no-text', pages }
    if (clean.length > task.maxChars) return { ok: false, reason: 'too-much-text', pages }
    return { ok: true, text: clean, pages }
  } catch {
    return { ok: false, reason: 'broken' }
  } finally {
    await pdf.loadingTask.destroy()
  }
}

/** Reads the zip's central directory only: entry count, declared sizes and ratios, encryption, and a Word body. */
async function checkZip (bytes: Buffer, limits: ZipLimits): Promise<void> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) => {
    yauzl.fromBuffer(bytes, { lazyEntries: true, validateEntrySizes: true }, (err, file) => { if (err === null) resolve(file); else reject(err) })
  }).catch(() => { throw new Unreadable('broken') })
  if (zip.entryCount > limits.maxEntries) { zip.close(); throw new Unreadable('zip-bomb') }
  let total = 0
  let body = false
  await new Promise<void>((resolve, reject) => {
    zip.on('entry', (entry: yauzl.Entry) => {
      total += entry.uncompressedSize
      const ratio = entry.uncompressedSize / Math.max(1, entry.compressedSize)
      if (total > limits.maxUncompressedBytes || (entry.uncompressedSize > limits.ratioFloorBytes && ratio > limits.maxRatio)) {
        zip.close()
        reject(new Unreadable('zip-bomb'))
        return
      }
      // Bit 0 of the general-purpose flags: the entry is encrypted.
      if ((entry.generalPurposeBitFlag & 1) !== 0) { zip.close(); reject(new Unreadable('encrypted')); return }
      if (entry.fileName === 'word/document.xml') body = true
      zip.readEntry()
    })
    zip.on('end', () => resolve())
    zip.on('error', () => reject(new Unreadable('broken')))
    zip.readEntry()
  })
  if (!body) throw new Unreadable('not-docx')
}

async function docxText (task: ExtractTask): Promise<ExtractResult> {
  const bytes = Buffer.from(task.bytes.buffer, task.bytes.byteOffset, task.bytes.byteLength)
  try {
    await checkZip(bytes, task.zip)
  } catch (err) {
    if (err instanceof Unreadable) return { ok: false, reason: err.reason }
    throw err
  }
  let value: string
  try {
    ({ value } = await mammoth.extractRawText({ buffer: bytes }))
  } catch {
    return { ok: false, reason: 'broken' }
  }
  const clean = tidy(value)
  if (clean === '') return { ok: false, reason: 'no-text' }
  if (clean.length > task.maxChars) return { ok: false, reason: 'too-much-text' }
  return { ok: true, text: clean, pages: null }
}

export default async function extract (task: ExtractTask): Promise<ExtractResult> {
  return task.kind === 'pdf' ? pdfText(task) : docxText(task)
}
