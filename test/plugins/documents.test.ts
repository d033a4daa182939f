import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'tap'
import { createDocuments, sniffDocument } from '../../plugins/documents/index.js'
import { AppError } from '../../plugins/errors.js'
import { docx, encryptedPdf, imageOnlyPdf, pdf, plainZip, zipBomb } from '../fixtures/documents.js'

const never = new AbortController().signal
const quiet = { error: () => {} }

async function reason (promise: Promise<unknown>) {
  try {
    await promise
  } catch (err) {
    if (err instanceof AppError) return { code: err.code, reason: (err.details as { reason?: string } | undefined)?.reason }
    throw err
  }
  return null
}

test('document types by their bytes', async (t) => {
  t.equal(sniffDocument(await pdf(['x']), 'a.docx'), 'pdf', 'a PDF whatever its name')
  t.equal(sniffDocument(Buffer.concat([Buffer.from('junk\n'), await pdf(['x'])]), null), 'pdf', 'the header within the first KiB')
  t.equal(sniffDocument(await docx(['x']), 'a.pdf'), 'docx')
  t.equal(sniffDocument(Buffer.from('# Title\n'), 'notes.MD'), 'md')
  t.equal(sniffDocument(Buffer.from('plain'), 'notes.md.txt'), 'txt')
  t.equal(sniffDocument(Buffer.from('plain'), null), 'txt')
  t.equal(sniffDocument(Buffer.from([0xff, 0xfe, 0x41]), 'a.txt'), null, 'not UTF-8')
  t.equal(sniffDocument(Buffer.from('a\u0000b'), 'a.txt'), null, 'a NUL byte: binary')
})

test('extraction in worker threads', async (t) => {
  const documents = createDocuments({ threads: 1, timeoutMs: 20_000, memoryMb: 256, log: quiet })
  t.teardown(documents.close)

  await t.test('the text of a PDF, its pages counted', async (t) => {
    const read = await documents.read(await pdf(['Delivery of the turbines may slip CANARY-PDF.', 'Page two: the budget has no contingency.']), 'plan.pdf', never)
    t.equal(read.type, 'pdf')
    t.equal(read.pages, 2)
    t.match(read.text, /turbines may slip CANARY-PDF\.[\s\S]*no contingency/)
  })

  await t.test('the text of a DOCX, paragraphs on their own lines', async (t) => {
    const read = await documents.read(await docx(['First risk: permits.', 'Second risk: weather & access.']), 'plan.docx', never)
    t.same(read, { type: 'docx', text: 'First risk: permits.\n\nSecond risk: weather & access.', pages: null })
  })

  await t.test('text files as they are, tidied', async (t) => {
    t.same(await documents.read(Buffer.from('\uFEFF# Risks\r\n\r\n\r\n\r\n- late\u0007 delivery  \r\n'), 'r.md', never), { type: 'md', text: '# Risks\n\n- late  delivery', pages: null })
  })

  await t.test('what cannot be read, and why', async (t) => {
    t.same(await reason(documents.read(await encryptedPdf('secret plan'), 'x.pdf', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'encrypted' })
    t.same(await reason(documents.read(await imageOnlyPdf(), 'scan.pdf', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'no-text' })
    t.same(await reason(documents.read(await pdf(Array.from({ length: 201 }, (_, i) => `page ${i + 1}`)), 'long.pdf', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'too-many-pages' })
    t.same(await reason(documents.read(Buffer.from('%PDF-1.7\n1 0 obj broken'), 'x.pdf', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'broken' })
    t.same(await reason(documents.read(await zipBomb(), 'bomb.docx', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'zip-bomb' })
    t.same(await reason(documents.read(await plainZip(), 'x.docx', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'not-docx' })
    t.same(await reason(documents.read(Buffer.from([0x50, 0x4b, 0x03, 0x04, 1, 2, 3]), 'x.docx', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'broken' })
    t.same(await reason(documents.read(await docx([]), 'empty.docx', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'no-text' })
    t.same(await reason(documents.read(Buffer.from(' \n\t\n'), 'blank.txt', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'no-text' })
    t.same(await reason(documents.read(Buffer.alloc(400_001, 'a'), 'long.txt', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'too-much-text' })
    t.same(await reason(documents.read(Buffer.from([0x00, 0x01, 0x02]), 'x.bin', never)), { code: 'UNSUPPORTED_MEDIA_TYPE', reason: undefined })
  })
})

test('a full queue is refused with Retry-After; a cancelled read stops', async (t) => {
  const documents = createDocuments({ threads: 1, timeoutMs: 20_000, memoryMb: 256, log: quiet })
  t.teardown(documents.close)
  const doc = await pdf(Array.from({ length: 30 }, (_, p) => Array.from({ length: 30 }, (_, l) => `Page ${p} line ${l}: the crane may be late.`).join('\n')))
  const results = await Promise.allSettled(Array.from({ length: 12 }, async () => documents.read(doc, 'a.pdf', never)))
  const refused = results.filter((r) => r.status === 'rejected')
  t.ok(refused.length >= 1 && refused.length <= 3, `${refused.length} of 12 refused: one thread, eight waiting`)
  for (const r of refused) t.match((r as PromiseRejectedResult).reason, { code: 'PROVIDER_UNAVAILABLE', headers: { 'retry-after': '5' } })
  t.ok(results.filter((r) => r.status === 'fulfilled').length >= 9, 'the others are read')

  const cancelled = new AbortController()
  cancelled.abort()
  t.same(await reason(documents.read(doc, 'a.pdf', cancelled.signal)), { code: 'VALIDATION_ERROR', reason: undefined }, 'a client that left')
})

test('a thread that runs out of heap refuses its document as too complex; the next document gets a new thread', async (t) => {
  // The worker of this test grows without end, as a hostile document would make a real one do.
  const documents = createDocuments({ threads: 1, timeoutMs: 120_000, memoryMb: 256, log: quiet, worker: new URL('../fixtures/hungry-worker.ts', import.meta.url) })
  t.teardown(documents.close)
  for (let i = 0; i < 2; i++) t.same(await reason(documents.read(await pdf(['x']), 'a.pdf', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'too-complex' }, `document ${i + 1}`)
})

test('a thread that cannot even start is logged, not thrown; its document waits out the time limit', async (t) => {
  const logged: unknown[] = []
  const documents = createDocuments({ threads: 1, timeoutMs: 1_500, memoryMb: 256, log: { error: (o: unknown) => { logged.push(o) } }, worker: new URL('../fixtures/broken-worker.ts', import.meta.url) })
  t.teardown(documents.close)
  // The time limit's timer does not hold the process open by itself (a server's listener does).
  const hold = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(hold))
  t.same(await reason(documents.read(await pdf(['x']), 'a.pdf', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'too-complex' })
  // On a busy machine the thread may take longer to fail than the document's time limit: its log line comes then.
  while (logged.length === 0) await sleep(20)
  await sleep(200)
  t.equal(logged.length, 1, 'the failure is logged once')
})

test('a thread that ends in the middle of a document: the document is refused as broken', async (t) => {
  const documents = createDocuments({ threads: 1, timeoutMs: 60_000, memoryMb: 256, log: quiet, worker: new URL('../fixtures/exiting-worker.ts', import.meta.url) })
  t.teardown(documents.close)
  t.same(await reason(documents.read(await pdf(['x']), 'a.pdf', never)), { code: 'UNPROCESSABLE_DOCUMENT', reason: 'broken' })
})
