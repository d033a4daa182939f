import createClient, { type Client, type MaybeOptionalInit, type Middleware } from 'openapi-fetch'
import { PortalApiError } from './errors.js'
import { retryingFetch, type Fetch, type RetryOptions } from './retry.js'
import type { components, operations, paths } from './schema.js'
import { readEvents, type StreamEvent } from './sse.js'
import type { TokenSource } from './token-source.js'
import { serializeBody } from './uploads.js'

export type { components, operations, operationEvents, paths } from './schema.js'
export { PortalApiError, retryAfterSeconds, UNEXPECTED_RESPONSE, type ErrorCode } from './errors.js'
export { RETRIED_STATUSES, retryDelayMs, retryingFetch, type Fetch, type RetryOptions } from './retry.js'
export { readEvents, type StreamedOperation, type StreamEvent } from './sse.js'
export { aiTokenSource, type FeatureId, type TokenResponse, type TokenSource, type TokenSourceOptions } from './token-source.js'
export { fileFrom, serializeBody, type UploadOptions, type UploadSource } from './uploads.js'
export { verifyWebhook, WebhookVerificationError, type WebhookDelivery } from './webhooks.js'

export type Schemas = components['schemas']

export interface PortalClientOptions {
  /** The service's address, e.g. https://ai.example.com */
  baseUrl: string
  /**
   * The bearer of every call: an AI token source (aiTokenSource) for the feature routes, or a fixed token
   * (an account's access token, the admin token). A call's own `authorization` header wins.
   */
  token?: string | TokenSource | (() => string | Promise<string>)
  /** Retries on 429/503 honouring Retry-After (see retryingFetch); false turns them off. */
  retry?: RetryOptions | false
  /** The fetch underneath (a proxy agent, a test double). */
  fetch?: Fetch
  /** Headers sent with every call. */
  headers?: Record<string, string>
}

type JsonOf<T> = T extends { content: { 'application/json': infer J } } ? J : never
type Body<Op> = Op extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never

/** The GET operations answering cursor pages (`nextCursor`), by path. */
type PagedPath = {
  [P in keyof paths]: paths[P] extends { get: infer Op } ? SuccessJson<Op> extends { nextCursor: string | null } ? P : never : never
}[keyof paths]
type PageOf<P extends PagedPath> = paths[P] extends { get: infer Op } ? SuccessJson<Op> : never
/** The items of a page: `data`, or `events` in the usage and audit pages. */
export type PageItem<P extends PagedPath> = PageOf<P> extends { data: Array<infer I> } ? I : PageOf<P> extends { events: Array<infer I> } ? I : never
type PageParams<P extends PagedPath> = paths[P] extends { get: { parameters: infer Params } } ? Params : never

// A call's second argument (its params, body, headers), required when the operation has required params or a body.
type RequiredKeysOf<T> = { [K in keyof T]: {} extends Pick<T, K> ? never : K }[keyof T] extends infer R ? R extends undefined ? never : R : never
type HttpMethod = 'get' | 'put' | 'post' | 'delete' | 'patch'
type PathsWith<M extends HttpMethod> = { [P in keyof paths]: paths[P] extends { [K in M]: {} } ? P : never }[keyof paths]
type ParseAs = 'json' | 'text' | 'blob' | 'arrayBuffer' | 'stream'
type InitOf<P extends keyof paths, M extends HttpMethod> = NonNullable<MaybeOptionalInit<paths[P], M>>
type Init<P extends keyof paths, M extends HttpMethod, A extends ParseAs> = Omit<InitOf<P, M>, 'parseAs'> & { parseAs?: A }
type InitArgs<P extends keyof paths, M extends HttpMethod, A extends ParseAs> = RequiredKeysOf<InitOf<P, M>> extends never ? [Init<P, M, A>?] : [Init<P, M, A>]

/** The success body of an operation: its 200, 201 or 202 JSON (a 204 has none). */
type SuccessJson<Op> = Op extends { responses: infer R } ? JsonOf<R[Extract<keyof R, 200 | 201 | 202>]> : never
/** What `data` is: the success JSON, or what `parseAs` asked for (an image as a Blob, say). */
type DataOf<Op, A extends ParseAs> = A extends 'blob' ? Blob
  : A extends 'arrayBuffer' ? ArrayBuffer
    : A extends 'text' ? string
      : A extends 'stream' ? ReadableStream<Uint8Array> | null
        : SuccessJson<Op>

/**
 * openapi-fetch's method, answering `data` as the success body: an error never resolves (it rejects with
 * PortalApiError), so there is no `error` branch to narrow first. A 204's `data` is undefined.
 */
export type PortalMethod<M extends HttpMethod> = <P extends PathsWith<M>, const A extends ParseAs = 'json'>(
  url: P, ...init: InitArgs<P, M, A>
) => Promise<{ data: DataOf<paths[P][M], A>, response: Response }>

export interface PortalClient extends Omit<Client<paths, 'application/json'>, 'GET' | 'PUT' | 'POST' | 'DELETE' | 'PATCH'> {
  GET: PortalMethod<'get'>
  PUT: PortalMethod<'put'>
  POST: PortalMethod<'post'>
  DELETE: PortalMethod<'delete'>
  PATCH: PortalMethod<'patch'>
  /** The token source given, to share with an OpenAI SDK (`apiKey: portal.token`) or to invalidate. */
  readonly token: PortalClientOptions['token']
  /**
   * Every item of a cursor-paged list, page after page (`cursor` followed until `nextCursor` is null).
   * `params` are the operation's own (a path id, filters, `limit` as the page size).
   */
  pages: <P extends PagedPath>(path: P, params?: PageParams<P>) => AsyncGenerator<PageItem<P>, void, undefined>
  /** The Settings Assistant's reply as events: `delta`, `suggestion`, then `done`. */
  streamSettingsAssistant: (body: Body<operations['askSettingsAssistant']>, init?: { signal?: AbortSignal }) => Promise<AsyncGenerator<StreamEvent<'askSettingsAssistant'>, void, undefined>>
  /** A chat reply as events: `delta`, `tool`, `suggestion`, `usage`, then `done` (the reply is stored). */
  streamChatMessage: (chatId: string, body: Body<operations['streamChatMessage']>, init?: { signal?: AbortSignal }) => Promise<AsyncGenerator<StreamEvent<'streamChatMessage'>, void, undefined>>
  /** An OpenAI-compatible completion as chat.completion.chunk events (`stream: true` is set), until `[DONE]`. */
  streamChatCompletion: (body: Omit<Body<operations['openaiCreateChatCompletion']>, 'stream'>, init?: { signal?: AbortSignal }) => Promise<AsyncGenerator<StreamEvent<'openaiCreateChatCompletion'>, void, undefined>>
}

/**
 * A typed client of the contract (openapi-fetch over the generated `paths`): `GET`, `POST`, `PATCH`, `PUT` and
 * `DELETE` take a path of the contract with its typed params and body and answer `{ data, response }`. Any
 * non-2xx answer rejects with PortalApiError (after the retries of 429/503), so `data` is the success body.
 * A body holding a Blob (fileFrom) is sent as multipart/form-data. An AI token the service calls expired is
 * minted again and the call retried once.
 */
export function createPortalClient (options: PortalClientOptions): PortalClient {
  const base = options.fetch ?? ((request: Request) => fetch(request))
  const transport = options.retry === false ? base : retryingFetch(options.retry, base)
  const token = options.token
  const bearer = async () => typeof token === 'string' ? token : token === undefined ? undefined : await token()
  const source = typeof token === 'function' && 'invalidate' in token ? token : undefined
  // The calls whose bearer came from the token source: one the service calls expired is sent again with a new token.
  const fromSource = new WeakSet<Request>()
  const refreshing: Fetch = async (request) => {
    if (source === undefined || !fromSource.has(request)) return await transport(request)
    const response = await transport(request.clone())
    if (response.status !== 401 || (await PortalApiError.from(response.clone())).code !== 'TOKEN_EXPIRED') return response
    await response.body?.cancel()
    source.invalidate()
    request.headers.set('authorization', `Bearer ${await source()}`)
    return await transport(request)
  }
  const api = createClient<paths, 'application/json'>({ baseUrl: options.baseUrl.replace(/\/+$/, ''), fetch: refreshing, bodySerializer: serializeBody, headers: options.headers })
  const auth: Middleware = {
    async onRequest ({ request }) {
      if (request.headers.has('authorization')) return undefined
      const value = await bearer()
      if (value === undefined) return undefined
      request.headers.set('authorization', `Bearer ${value}`)
      if (source !== undefined) fromSource.add(request)
      return request
    },
    async onResponse ({ response }) {
      if (!response.ok) throw await PortalApiError.from(response)
      return undefined
    }
  }
  api.use(auth)

  async function * pages<P extends PagedPath> (path: P, params?: PageParams<P>): AsyncGenerator<PageItem<P>, void, undefined> {
    const given = (params ?? {}) as { query?: Record<string, unknown>, path?: Record<string, unknown> }
    let cursor: string | undefined
    do {
      const { data } = await (api.GET as (path: string, init: unknown) => Promise<{ data: { data?: unknown[], events?: unknown[], nextCursor: string | null } }>)(
        path, { params: { ...given, query: { ...given.query, ...(cursor === undefined ? {} : { cursor }) } } })
      for (const item of (data.data ?? data.events) as unknown[]) yield item as PageItem<P>
      cursor = data.nextCursor ?? undefined
    } while (cursor !== undefined)
  }

  const streamed = async <Op extends 'askSettingsAssistant' | 'streamChatMessage' | 'openaiCreateChatCompletion'>(
    path: string, params: Record<string, unknown>, body: unknown, init?: { signal?: AbortSignal }
  ) => {
    const { response } = await (api.POST as (path: string, init: unknown) => Promise<{ response: Response }>)(path, {
      params, body, parseAs: 'stream', headers: { accept: 'text/event-stream' }, signal: init?.signal
    })
    return readEvents<Op>(response)
  }

  return Object.assign(api as unknown as Omit<PortalClient, 'token' | 'pages' | 'streamSettingsAssistant' | 'streamChatMessage' | 'streamChatCompletion'>, {
    token,
    pages,
    streamSettingsAssistant: async (body: Body<operations['askSettingsAssistant']>, init?: { signal?: AbortSignal }) =>
      await streamed<'askSettingsAssistant'>('/v1/ai/settings-assistant/messages', {}, body, init),
    streamChatMessage: async (chatId: string, body: Body<operations['streamChatMessage']>, init?: { signal?: AbortSignal }) =>
      await streamed<'streamChatMessage'>('/v1/chats/{id}/stream', { path: { id: chatId } }, body, init),
    streamChatCompletion: async (body: Omit<Body<operations['openaiCreateChatCompletion']>, 'stream'>, init?: { signal?: AbortSignal }) =>
      await streamed<'openaiCreateChatCompletion'>('/v1/openai/chat/completions', {}, { ...body, stream: true }, init)
  })
}
