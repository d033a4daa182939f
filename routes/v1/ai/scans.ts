import { basename } from 'node:path'
import AjvCompiler from '@fastify/ajv-compiler'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Multipart } from '@fastify/multipart'
import type { FastifyRequest } from 'fastify'
import Type from 'typebox'
import { MAX_DOCUMENT_BYTES, type DocumentType } from '../../../plugins/documents/index.js'
import { AppError, invalidBody } from '../../../plugins/errors.js'
import { toCents } from '../../../plugins/money.js'
import { errorResponses } from '../../../schemas/errors.js'
import type { Principal } from '../../../schemas/principal.js'
import { ref } from '../../../schemas/refs.js'
import { MAX_FILENAME, MAX_SCAN_TEXT, Risk, Scan, ScanList, ScanListQuery, ScanText } from '../../../schemas/scans.js'

const SUBMIT = { auth: 'ai-token' as const, feature: 'risk-scan' as const }
/** Reads are not a feature call: they are limited by the plan's general rate. */
const READ = { auth: 'ai-token' as const }
const common = { tags: ['risk-scans'], security: [{ aiToken: [] }] }
const byId = Type.Object({ id: Type.String({ pattern: '^scn_[0-9A-Za-z]{16}$', description: 'A scan id.' }) })
const READ_ERRORS = ['VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_FOUND', 'RATE_LIMITED'] as const
const FIELD_NAMES = ['text', 'forceLlm'] as const
const MULTIPART_LIMITS = { fileSize: MAX_DOCUMENT_BYTES, files: 1, fields: FIELD_NAMES.length, parts: 3, fieldSize: 4 * MAX_SCAN_TEXT, headerPairs: 20 }
const who = (request: FastifyRequest) => request.principal as Principal

const invalidField = (path: string, message: string) => invalidBody({ path, message })

/** What was sent: a document (with its name) or text, and whether the AI service should use its language model. */
interface ScanRequest { file: { bytes: Buffer, filename: string | null } | null, text: string | null, forceLlm: boolean }

/** The file name as kept: its last path segment, without control characters, at most MAX_FILENAME characters. */
function cleanFilename (name: string): string | null {
  // eslint-disable-next-line no-control-regex
  const base = basename(name.replace(/\\/g, '/')).replace(/[\u0000-\u001f\u007f]/g, '').trim()
  return base === '' ? null : [...base].slice(0, MAX_FILENAME).join('')
}

function checkText (text: string): string {
  if ([...text].length > MAX_SCAN_TEXT) throw invalidField('/text', `must not be longer than ${MAX_SCAN_TEXT.toLocaleString('en-US')} characters`)
  if (text.trim() === '') throw invalidField('/text', 'must hold some text')
  return text
}

/** Reads a multipart body: the `file` (buffered up to 10 MB) or the `text` field, and `forceLlm`. */
async function readMultipart (parts: AsyncIterableIterator<Multipart>): Promise<ScanRequest> {
  const out: ScanRequest = { file: null, text: null, forceLlm: false }
  try {
    for await (const part of parts) {
      if (part.type === 'file') {
        if (part.fieldname !== 'file') throw invalidField(`/${part.fieldname}`, 'the only file field is file')
        out.file = { bytes: await part.toBuffer(), filename: cleanFilename(part.filename) }
      } else if (part.fieldname === 'text') {
        if (part.valueTruncated) throw invalidField('/text', `must not be longer than ${MAX_SCAN_TEXT.toLocaleString('en-US')} characters`)
        out.text = String(part.value)
      } else if (part.fieldname === 'forceLlm') {
        if (part.value !== 'true' && part.value !== 'false') throw invalidField('/forceLlm', 'must be true or false')
        out.forceLlm = part.value === 'true'
      } else {
        throw invalidField(`/${part.fieldname}`, 'is not a field of this request (file, text, forceLlm)')
      }
    }
  } catch (err) {
    const e = err as Error & { code?: string }
    if (e instanceof AppError) throw e
    if (e.code === 'FST_REQ_FILE_TOO_LARGE') {
      throw new AppError('PAYLOAD_TOO_LARGE', `The document is larger than ${MAX_DOCUMENT_BYTES / (1024 * 1024)} MB: split it, or scan its text.`, { maxBytes: MAX_DOCUMENT_BYTES })
    }
    if (e.code === 'FST_FILES_LIMIT') throw invalidField('/file', 'send one document')
    if (e.code === 'FST_PARTS_LIMIT' || e.code === 'FST_FIELDS_LIMIT') throw invalidField('/', 'has too many parts: the fields are file (or text) and forceLlm')
    throw new AppError('VALIDATION_ERROR', 'The multipart body is malformed or ended before it was complete: send it again.')
  }
  return out
}

const scans: FastifyPluginAsyncTypebox = async (app) => {
  // JSON bodies are validated against the contract's schema; a multipart body is read part by part with its own checks.
  const compileJson = AjvCompiler()({ ScanText, Risk }, { customOptions: { allErrors: true, removeAdditional: false, useDefaults: true, coerceTypes: false } })

  app.post('/scans', {
    config: SUBMIT,
    validatorCompiler: (route) => (route as { contentType?: string }).contentType === 'multipart/form-data' ? () => true : compileJson(route),
    schema: {
      operationId: 'createScan',
      summary: 'Scan a document or text for project risks',
      description: 'Either multipart/form-data with one `file` (PDF, DOCX, TXT or MD by its bytes; ≤ 10 MB, ≤ 200 pages) or a `text` field, or JSON ' +
        '`{text, forceLlm}`. The document\'s text is extracted on the server (encrypted, image-only or damaged files: 422 UNPROCESSABLE_DOCUMENT ' +
        'with `details.reason`). Answers 201 with the risks found, kept in your history (the list and the file name encrypted; the document and ' +
        'its text are never stored). One scan of quota per success, none on failure; on a plan billed in credits, its cost. `AI-Provider` names ' +
        'the scanner; test-mode keys scan in the sandbox (offline, deterministic).',
      ...common,
      body: {
        content: {
          'multipart/form-data': {
            schema: Type.Object({
              file: Type.Optional(Type.String({ format: 'binary', description: 'The document: PDF, DOCX, TXT or MD, ≤ 10 MB. Send this or text.' })),
              text: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_SCAN_TEXT, description: 'Text to scan instead of a file, 1 to 100,000 characters.' })),
              forceLlm: Type.Optional(Type.Boolean({ default: false, description: 'Ask the risk AI service to use its language model.' }))
            })
          },
          'application/json': { schema: ref(ScanText) }
        }
      },
      response: {
        201: { ...ref(Scan), description: 'The scan. Headers: Location, AI-Provider, AI-Cost-Micro-USD, AI-Cost-Cents, X-Quota-*.' },
        ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'NOT_ENTITLED', 'QUOTA_EXCEEDED', 'INSUFFICIENT_CREDITS', 'PAYLOAD_TOO_LARGE',
          'UNSUPPORTED_MEDIA_TYPE', 'UNPROCESSABLE_DOCUMENT', 'CONTENT_REJECTED', 'RATE_LIMITED', 'PROVIDER_ERROR', 'PROVIDER_UNAVAILABLE', 'PROVIDER_NOT_CONFIGURED',
          'PROVIDER_TIMEOUT', 'STORAGE_UNAVAILABLE')
      }
    }
  }, async (request, reply) => {
    const principal = who(request)
    const scanners = app.scans.scanners(principal.mode)
    if (scanners.length === 0) {
      throw new AppError('PROVIDER_NOT_CONFIGURED', 'Risk scans are not set up on this server (no AI_SERVICE_URL or OPENAI_API_KEY): use a test-mode key, or ask the operator.')
    }
    // JSON was checked against ScanText; any other body (text/plain, none at all) is not one of the two forms.
    if (!request.isMultipart() && (typeof request.body !== 'object' || request.body === null)) {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'Send a document as multipart/form-data in the field `file`, or text as JSON `{"text": …}` (or a multipart field `text`).')
    }
    const sent: ScanRequest = request.isMultipart()
      ? await readMultipart(request.parts({ limits: MULTIPART_LIMITS }))
      : { file: null, text: (request.body as { text: string }).text, forceLlm: (request.body as { forceLlm?: boolean }).forceLlm === true }
    if (sent.file !== null && sent.text !== null) throw invalidField('/', 'send either a file or text, not both')
    if (sent.file === null && sent.text === null) throw invalidField('/file', 'is required: a document (or send text instead)')

    const signal = app.readiness.callSignal(reply.raw)
    let text: string
    let type: DocumentType | null = null
    if (sent.file !== null) {
      const document = await app.documents.read(sent.file.bytes, sent.file.filename, signal)
      text = document.text
      type = document.type
      request.log.info({ type, bytes: sent.file.bytes.length, pages: document.pages, chars: text.length }, 'document read')
    } else {
      text = checkText(sent.text as string)
    }

    const metered = await app.meter(request, reply, 1, { costMicroUsd: app.scans.estimate(scanners, text) })
    let ran
    try {
      ran = await app.scans.run(scanners, {
        text,
        file: sent.file === null ? null : { bytes: sent.file.bytes, type: type as DocumentType },
        forceLlm: sent.forceLlm,
        user: app.hash.user(principal.userId),
        signal
      }, request.log, (vendor, outcome, seconds) => app.metrics.providerCall({ feature: 'risk-scan', mode: principal.mode, vendor, outcome, seconds }))
    } catch (err) {
      await metered.release()
      throw app.readiness.failure(err as Error)
    }
    const { result: output, used } = ran
    const settlement = app.scans.settlement(used, output)
    const record = { userId: principal.userId, mode: principal.mode, filename: sent.file?.filename ?? null, output, provider: used.name, requestId: request.id }
    let scan
    let charged: number
    try {
      // The charge and the scan commit together: a scan in the history always has its ledger row.
      ({ scan, charged } = await app.store.transaction(async (tx) => {
        const cost = await metered.settle(settlement, tx)
        return { scan: await app.scans.insert(tx, record), charged: cost }
      }))
    } catch (err) {
      // The provider was paid: the charge is recorded (retried until the database takes it); the list is lost.
      request.log.error({ err }, 'could not store a finished scan')
      await metered.settle(settlement)
      throw new AppError('STORAGE_UNAVAILABLE', 'The scan finished but could not be saved: retry in a moment.')
    }
    request.log.info({ scanId: scan.id, provider: used.name, source: output.source, risks: output.data.length, inputTokens: output.usage.inputTokens, outputTokens: output.usage.outputTokens }, 'scan completed')
    return reply.code(201).header('location', `/v1/ai/scans/${scan.id}`).header('ai-provider', used.name)
      .header('ai-cost-micro-usd', String(charged)).header('ai-cost-cents', String(toCents(charged))).send(scan)
  })

  app.get('/scans', {
    config: READ,
    schema: {
      operationId: 'listScans',
      summary: 'List your scans',
      description: 'Newest first, paged with `cursor` and `limit`. Test-mode and live scans are kept apart.',
      ...common,
      querystring: ScanListQuery,
      response: { 200: ref(ScanList), ...errorResponses('VALIDATION_ERROR', 'UNAUTHENTICATED', 'TOKEN_EXPIRED', 'RATE_LIMITED') }
    }
  }, async (request) => app.scans.list(who(request).userId, who(request).mode, request.query))

  app.get('/scans/:id', {
    config: READ,
    schema: {
      operationId: 'getScan',
      summary: 'Read a scan',
      description: 'The risks of one of your scans. Another user\'s scan is NOT_FOUND.',
      ...common,
      params: byId,
      response: { 200: ref(Scan), ...errorResponses(...READ_ERRORS) }
    }
  }, async (request) => app.scans.get(who(request).userId, who(request).mode, request.params.id))

  app.delete('/scans/:id', {
    config: READ,
    schema: {
      operationId: 'deleteScan',
      summary: 'Delete a scan',
      description: 'Deletes the scan and its risk list for good. The ledger row of what it cost stays (no content).',
      ...common,
      params: byId,
      response: { 204: { description: 'Deleted.', type: 'null' }, ...errorResponses(...READ_ERRORS) }
    }
  }, async (request, reply) => {
    await app.scans.remove(who(request).userId, who(request).mode, request.params.id)
    return reply.code(204).send(null)
  })
}

export default scans
