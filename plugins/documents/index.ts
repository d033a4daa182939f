import { isUtf8 } from 'node:buffer'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
import { Piscina } from 'piscina'
import { AppError } from '../errors.js'
import { tidy, type DocumentKind, type ExtractResult, type ExtractTask, type UnreadableReason, type ZipLimits } from './text.js'

/** What an uploaded document may be (SPEC §13). */
export const MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
export const MAX_DOCUMENT_PAGES = 200
/** Extracted text beyond this is refused: about 100,000 tokens, a dozen calls of the LLM scanner. */
export const MAX_DOCUMENT_CHARS = 400_000
/** A DOCX's central directory: what a real Word file never comes near. */
export const ZIP_LIMITS: ZipLimits = { maxEntries: 2_000, maxUncompressedBytes: 100 * 1024 * 1024, maxRatio: 100, ratioFloorBytes: 1024 * 1024 }
/** Documents waiting for a worker thread, per thread; more are refused with Retry-After. */
export const QUEUE_PER_THREAD = 8

export type DocumentType = DocumentKind | 'txt' | 'md'

export interface ReadDocument {
  type: DocumentType
  text: string
  /** Pages of a PDF; null for the others. */
  pages: number | null
}

const PDF_MAGIC = Buffer.from('%PDF-')
const ZIP_MAGIC = Buffer.from([0x50, 0x4b, 0x03, 0x04])
/** PDF readers accept the header within the first KiB (after junk some generators put first). */
const PDF_HEADER_WINDOW = 1024

/** The type of a document by its bytes: PDF, a zip (a DOCX, once its directory is read), UTF-8 text; null for anything else. */
export function sniffDocument (bytes: Buffer, filename: string | null): DocumentType | null {
  if (bytes.subarray(0, PDF_HEADER_WINDOW).includes(PDF_MAGIC)) return 'pdf'
  if (bytes.subarray(0, 4).equals(ZIP_MAGIC)) return 'docx'
  if (bytes.includes(0) || !isUtf8(bytes)) return null
  return filename !== null && /\.(md|markdown)$/i.test(filename) ? 'md' : 'txt'
}

const REASON_MESSAGES: Record<UnreadableReason | 'too-complex', string> = {
  encrypted: 'The document is protected by a password or encrypted: upload a copy without protection.',
  'no-text': 'The document has no text layer (a scan or images only): run it through text recognition first, or paste its text.',
  broken: 'The document is damaged or not a valid PDF or DOCX file: save it again and upload the copy.',
  'too-many-pages': `The document has more than ${MAX_DOCUMENT_PAGES} pages: split it and scan the parts.`,
  'too-much-text': `The document holds more than ${MAX_DOCUMENT_CHARS.toLocaleString('en-US')} characters of text: split it and scan the parts.`,
  'zip-bomb': 'The document unpacks to far more than a Word file ever does: it was refused as unsafe.',
  'not-docx': 'The zip file is not a Word document (DOCX): upload a PDF, DOCX, TXT or MD file.',
  'too-complex': 'The document took too long or too much memory to read: split it, or save it again in a simpler form.'
}

export const unprocessable = (reason: UnreadableReason | 'too-complex', extra: Record<string, unknown> = {}) =>
  new AppError('UNPROCESSABLE_DOCUMENT', REASON_MESSAGES[reason], { reason, ...extra })

/** Node's codes for a worker that ran out of heap, and piscina's for a task stopped by its signal. */
const OUT_OF_MEMORY = 'ERR_WORKER_OUT_OF_MEMORY'

export interface DocumentsOptions {
  threads: number
  timeoutMs: number
  memoryMb: number
  log: Pick<FastifyBaseLogger, 'error'>
  /** The worker module (default: this folder's extract-worker, as this file is run: built JavaScript, or TypeScript from source). */
  worker?: URL
}

/** Reads the text of uploaded documents: PDF and DOCX in a pool of worker threads with capped heaps and a time limit. */
export function createDocuments (opts: DocumentsOptions) {
  const worker = opts.worker ?? new URL(`./extract-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url)
  const pool = new Piscina<ExtractTask, ExtractResult>({
    filename: worker.href,
    minThreads: 0,
    maxThreads: opts.threads,
    idleTimeout: 30_000,
    resourceLimits: { maxOldGenerationSizeMb: opts.memoryMb, maxYoungGenerationSizeMb: Math.max(16, Math.floor(opts.memoryMb / 8)), stackSizeMb: 4 }
  })

  // A thread that dies with no document of its own (at start-up) is reported here, not thrown: unhandled, the event
  // would end the process. Its documents wait out their time limit.
  pool.on('error', (err: Error & { code?: string }) => opts.log.error({ code: err.code }, 'a document-extraction thread failed outside a document'))

  async function inWorker (kind: DocumentKind, bytes: Buffer, signal: AbortSignal): Promise<ExtractResult> {
    // The queue's bound, checked here rather than by piscina's maxQueue so that the refusal is the contract's error.
    if (pool.queueSize >= opts.threads * QUEUE_PER_THREAD) {
      throw new AppError('PROVIDER_UNAVAILABLE', 'Too many documents are being read right now: retry in a few seconds.', undefined, { 'retry-after': '5' })
    }
    // The worker gets its own copy (moved, not cloned): a multipart buffer may share memory with other requests.
    const copy = new Uint8Array(bytes)
    const timeout = AbortSignal.timeout(opts.timeoutMs)
    try {
      return await pool.run({ kind, bytes: copy, maxPages: MAX_DOCUMENT_PAGES, maxChars: MAX_DOCUMENT_CHARS, zip: ZIP_LIMITS },
        // piscina's TransferList type reads the newest MessagePort.postMessage overload (options), not the array form.
        { signal: AbortSignal.any([signal, timeout]), transferList: [copy.buffer] as never })
    } catch (err) {
      if (signal.aborted) throw new AppError('VALIDATION_ERROR', 'The request was cancelled before the document was read.')
      if (timeout.aborted || (err as { code?: string }).code === OUT_OF_MEMORY) throw unprocessable('too-complex')
      // A worker that died otherwise was killed by what it read.
      throw unprocessable('broken')
    }
  }

  return {
    /** The document's type and text; UNSUPPORTED_MEDIA_TYPE or UNPROCESSABLE_DOCUMENT (with `details.reason`) when it has none to give. */
    async read (bytes: Buffer, filename: string | null, signal: AbortSignal): Promise<ReadDocument> {
      const type = sniffDocument(bytes, filename)
      if (type === null) throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'The file is not a PDF, DOCX, TXT or MD document (by its bytes): upload one of those.')
      if (type === 'txt' || type === 'md') {
        const text = tidy(bytes.toString('utf8').replace(/^\uFEFF/, ''))
        if (text === '') throw unprocessable('no-text')
        if (text.length > MAX_DOCUMENT_CHARS) throw unprocessable('too-much-text')
        return { type, text, pages: null }
      }
      const result = await inWorker(type, bytes, signal)
      if (!result.ok) throw unprocessable(result.reason, result.pages === undefined ? {} : { pages: result.pages })
      return { type, text: result.text, pages: result.pages }
    },
    close: async () => pool.destroy()
  }
}

export type Documents = ReturnType<typeof createDocuments>

declare module 'fastify' {
  interface FastifyInstance {
    documents: Documents
  }
}

/** Document text extraction for the features that read uploads (risk scans). Threads start on the first document. */
export default fp(async function documents (app) {
  const documents = createDocuments({ threads: app.config.SCAN_EXTRACT_THREADS, timeoutMs: app.config.SCAN_EXTRACT_TIMEOUT_MS, memoryMb: app.config.SCAN_EXTRACT_MEMORY_MB, log: app.log })
  app.decorate('documents', documents)
  app.addHook('onClose', documents.close)
}, { name: 'documents', fastify: '5.x', dependencies: ['config'] })
