import { test } from 'tap'
import { createDocuments, MAX_DOCUMENT_BYTES, sniffDocument } from '../../plugins/documents/index.js'
import { AppError } from '../../plugins/errors.js'
import { docx, encryptedPdf, imageOnlyPdf, pdf, plainZip, zipBomb } from '../fixtures/documents.js'

const never = new AbortController().signal

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
  const documents = createDocuments({ threads: 1, timeoutMs: 20_000, memoryMb: 256 })
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
    t.ok(MAX_DOCUMENT_BYTES === 10 * 1024 * 1024)
  })
})
