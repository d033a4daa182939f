import t from 'tap'
import { fileFrom } from '../../clients/typescript/src/index.js'
import { docx, encryptedPdf, pdf } from '../fixtures/documents.js'
import { mintToken, refused, smokeClient } from './client.js'

t.test('risk scans: a PDF, a DOCX and text → 201 with risks; list, read, delete; unreadable documents and bad input refused', async (t) => {
  const portal = smokeClient(t, await mintToken(t))
  const file = async (bytes: Buffer, filename: string) => await fileFrom(bytes, { filename })
  const { data: fromPdf, response } = await portal.POST('/v1/ai/scans', { body: { file: await file(await pdf(['Smoke plan.', 'The supplier may deliver the turbines late.']), 'smoke-plan.pdf') } })
  const byId = { params: { path: { id: fromPdf.id } } }
  t.equal(response.headers.get('location'), `/v1/ai/scans/${fromPdf.id}`)
  t.equal(fromPdf.filename, 'smoke-plan.pdf')
  t.ok(fromPdf.data.length > 0, 'the sandbox finds the schedule risk')
  await portal.POST('/v1/ai/scans', { body: { file: await file(await docx(['The budget has no contingency.']), 'smoke-plan.docx') } })
  await portal.POST('/v1/ai/scans', { body: { text: 'The permit for the access road is pending.' } })
  const { data: listed } = await portal.GET('/v1/ai/scans', { params: { query: { limit: 3 } } })
  t.ok(listed.data.some((s) => s.id === fromPdf.id))
  await portal.GET('/v1/ai/scans/{id}', byId)
  await portal.DELETE('/v1/ai/scans/{id}', byId)
  await refused(t, portal.GET('/v1/ai/scans/{id}', byId), 404, 'NOT_FOUND')
  const locked = await refused(t, portal.POST('/v1/ai/scans', { body: { file: await file(await encryptedPdf('locked'), 'locked.pdf') } }), 422, 'UNPROCESSABLE_DOCUMENT')
  t.equal(locked?.details?.reason, 'encrypted')
  await refused(t, portal.POST('/v1/ai/scans', { body: { file: await file(Buffer.from('a risk'), 'a.txt'), text: 'and text' } }), 400, 'VALIDATION_ERROR')
  await refused(t, portal.POST('/v1/ai/scans', { body: { text: '' } }), 400, 'VALIDATION_ERROR')
  await refused(t, portal.POST('/v1/ai/scans', { body: { file: await file(Buffer.from([0, 1, 2, 3]), 'x.bin') } }), 415, 'UNSUPPORTED_MEDIA_TYPE')
  await refused(t, smokeClient(t).GET('/v1/ai/scans'), 401, 'UNAUTHENTICATED')
})
