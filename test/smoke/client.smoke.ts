import sharp from 'sharp'
import t, { type Test } from 'tap'
import { aiTokenSource, createPortalClient, fileFrom, PortalApiError, type Fetch } from '../../clients/typescript/src/index.js'
import { contract, settings } from './client.js'

// The deployment through the TypeScript client, as an app would use it: every answer the client receives is also
// held against the committed contract (the operation found by method and path).

/** The operation of a request, by its method and its path matched against the contract's path templates. */
function operationOf (request: Request): string | undefined {
  const path = new URL(request.url).pathname
  for (const [id, { method, path: template }] of contract.operations) {
    const pattern = new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`)
    if (method === request.method && pattern.test(path)) return id
  }
  return undefined
}

function checkedFetch (t: Test): Fetch {
  return async (request) => {
    const response = await fetch(request)
    const operationId = operationOf(request)
    if (operationId === undefined) return response
    const contentType = response.headers.get('content-type') ?? ''
    if (/^image\//.test(contentType)) return response
    const text = await response.clone().text()
    const body = /json/.test(contentType) ? JSON.parse(text) as unknown : text
    t.same(contract.check(operationId, response.status, contentType, body), [], `${request.method} ${new URL(request.url).pathname} conforms (${operationId} ${response.status})`)
    return response
  }
}

t.test('the client: token source, typed calls, a streamed reply, pages, an upload and the error class', async (t) => {
  const { baseUrl, apiKey } = settings()
  const fetch = checkedFetch(t)
  // Retries on: a deployment that rate-limits minting answers 429 with Retry-After, which the client waits out.
  const token = aiTokenSource({ baseUrl, credential: apiKey, fetch, retry: { retries: 2, maxDelayMs: 70_000, onRetry: ({ delayMs }) => t.comment(`rate limited: waiting ${delayMs} ms`) } })
  const portal = createPortalClient({ baseUrl, token, fetch })
  const { data: entitlements } = await portal.GET('/v1/ai/entitlements')
  t.equal(entitlements.mode, 'test')

  let reply = ''
  let done = false
  for await (const event of await portal.streamSettingsAssistant({ message: 'How do I make my exports sharper?' })) {
    if (event.event === 'delta') reply += event.data.text
    if (event.event === 'done') done = true
  }
  t.ok(reply.length > 0 && done, 'a streamed reply, then done')

  const { data: task } = await portal.POST('/v1/tasks', { body: { title: 'Smoke: through the client' } })
  const titles: string[] = []
  for await (const item of portal.pages('/v1/tasks', { query: { limit: 100 } })) titles.push(item.title)
  t.ok(titles.includes('Smoke: through the client'), 'the task is in the pages')
  await portal.DELETE('/v1/tasks/{id}', { params: { path: { id: task.id } } })

  const photo = await sharp({ create: { width: 96, height: 64, channels: 3, background: '#c08040' } }).png().toBuffer()
  const { data: cutOut } = await portal.POST('/v1/ai/background-removal', { body: { image: await fileFrom(photo, { filename: 'photo.png' }) }, parseAs: 'blob' })
  t.match(cutOut.type, /^image\//, 'a cut-out')

  const missing = await portal.GET('/v1/tasks/{id}', { params: { path: { id: task.id } } }).catch((e: unknown) => e)
  t.ok(missing instanceof PortalApiError, 'an error is a PortalApiError')
  t.equal((missing as PortalApiError).code, 'NOT_FOUND')
  t.match((missing as PortalApiError).requestId, /\S/)
})
