import t from 'tap'
import { docx, encryptedPdf, pdf } from '../fixtures/documents.js'
import { call, expectError, mintToken } from './client.js'

const SUBMIT = { method: 'POST', path: '/v1/ai/scans' }

function form (file: Buffer | null, name: string, fields: Record<string, string> = {}) {
  const data = new FormData()
  for (const [field, value] of Object.entries(fields)) data.append(field, value)
  if (file !== null) data.append('file', new Blob([new Uint8Array(file)]), name)
  return data
}

t.test('risk scans: a PDF, a DOCX and text → 201 with risks; list, read, delete; unreadable documents and bad input refused', async (t) => {
  const token = await mintToken(t)
  const fromPdf = await call(t, 'createScan', 201, { ...SUBMIT, token, form: form(await pdf(['Smoke plan.', 'The supplier may deliver the turbines late.']), 'smoke-plan.pdf') })
  const id = fromPdf.json.id as string
  t.equal(fromPdf.headers.get('location'), `/v1/ai/scans/${id}`)
  t.equal(fromPdf.json.filename, 'smoke-plan.pdf')
  t.ok(fromPdf.json.data.length > 0, 'the sandbox finds the schedule risk')
  await call(t, 'createScan', 201, { ...SUBMIT, token, form: form(await docx(['The budget has no contingency.']), 'smoke-plan.docx') })
  await call(t, 'createScan', 201, { ...SUBMIT, token, body: { text: 'The permit for the access road is pending.' } })
  const listed = await call(t, 'listScans', 200, { path: '/v1/ai/scans?limit=3', token })
  t.ok(listed.json.data.some((s: { id: string }) => s.id === id))
  await call(t, 'getScan', 200, { path: `/v1/ai/scans/${id}`, token })
  await call(t, 'deleteScan', 204, { method: 'DELETE', path: `/v1/ai/scans/${id}`, token })
  expectError(t, await call(t, 'getScan', 404, { path: `/v1/ai/scans/${id}`, token }), 'NOT_FOUND')
  const locked = await call(t, 'createScan', 422, { ...SUBMIT, token, form: form(await encryptedPdf('locked'), 'locked.pdf') })
  expectError(t, locked, 'UNPROCESSABLE_DOCUMENT')
  t.equal(locked.json.error.details.reason, 'encrypted')
  expectError(t, await call(t, 'createScan', 400, { ...SUBMIT, token, form: form(Buffer.from('a risk'), 'a.txt', { text: 'and text' }) }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'createScan', 400, { ...SUBMIT, token, body: { text: '' } }), 'VALIDATION_ERROR')
  expectError(t, await call(t, 'createScan', 415, { ...SUBMIT, token, form: form(Buffer.from([0, 1, 2, 3]), 'x.bin') }), 'UNSUPPORTED_MEDIA_TYPE')
  expectError(t, await call(t, 'listScans', 401, { path: '/v1/ai/scans' }), 'UNAUTHENTICATED')
})
