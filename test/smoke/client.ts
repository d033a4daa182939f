import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import {
  aiTokenSource, createPortalClient, PortalApiError, retryingFetch, type ErrorCode, type Fetch, type FeatureId, type PortalClient, type TokenSource
} from '../../clients/typescript/src/index.js'
import { Contract } from './contract.js'

/**
 * The smoke suite's view of a deployment: `BASE_URL`, a test-mode API key (`SMOKE_API_KEY`, so no provider
 * is charged) and, optionally, the deployment's admin token (`SMOKE_ADMIN_TOKEN`) for the admin API and the
 * error paths that need a user of their own. Every response goes through the committed contract.
 */
export interface SmokeSettings { baseUrl: string, apiKey: string, adminToken: string | undefined }

export function settings (env: NodeJS.ProcessEnv = process.env): SmokeSettings {
  const problems: string[] = []
  const baseUrl = env.BASE_URL ?? ''
  if (!/^https?:\/\/[^/]+/.test(baseUrl)) problems.push('BASE_URL must be the deployment\'s address, e.g. BASE_URL=http://127.0.0.1:3000')
  const apiKey = env.SMOKE_API_KEY ?? ''
  if (!apiKey.startsWith('pak_test_')) problems.push('SMOKE_API_KEY must be a test-mode key (pak_test_…): the smoke suite never charges a provider')
  if (problems.length > 0) throw new Error(`smoke settings: ${problems.join('; ')}`)
  const adminToken = env.SMOKE_ADMIN_TOKEN === '' ? undefined : env.SMOKE_ADMIN_TOKEN
  return { baseUrl: baseUrl.replace(/\/+$/, ''), apiKey, adminToken }
}

export interface Sent {
  status: number
  headers: Headers
  contentType: string
  text: string
  /** The parsed JSON body, or undefined when the body is not JSON. */
  json: any
  bytes: Buffer
}

export interface CallOptions {
  method?: string
  /** Path with its parameters filled in, and an optional query string. */
  path: string
  token?: string
  headers?: Record<string, string>
  body?: unknown
  /** A body sent as it is (malformed JSON, say). */
  raw?: string
  form?: FormData
  /** `manual`: a redirect is the answer (the OAuth callback's), not followed. */
  redirect?: 'follow' | 'manual'
}

export const contract = Contract.committed()

/** One HTTP call to the deployment, unchecked. */
export async function send (options: CallOptions, through: Fetch = async (request) => await fetch(request)): Promise<Sent> {
  const headers: Record<string, string> = { ...options.headers }
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
  let body: string | FormData | undefined
  if (options.form !== undefined) body = options.form
  else if (options.raw !== undefined) body = options.raw
  else if (options.body !== undefined) {
    body = JSON.stringify(options.body)
    headers['content-type'] ??= 'application/json'
  }
  const response = await through(new Request(`${settings().baseUrl}${options.path}`, { method: options.method ?? 'GET', headers, body, redirect: options.redirect ?? 'follow' }))
  const bytes = Buffer.from(await response.arrayBuffer())
  const contentType = response.headers.get('content-type') ?? ''
  const text = contentType.startsWith('image/') ? '' : bytes.toString('utf8')
  const json: unknown = /json/.test(contentType) ? JSON.parse(text) : undefined
  return { status: response.status, headers: response.headers, contentType, text, json, bytes }
}

/** Asserts the status, the request id and, for an operation of the contract, that the answer conforms to it. */
export function check (t: Test, operationId: string | null, expectedStatus: number, options: CallOptions, sent: Sent): Sent {
  const what = `${options.method ?? 'GET'} ${options.path}`
  const code = (sent.json as { error?: { code?: string } } | undefined)?.error?.code
  t.equal(sent.status, expectedStatus, `${what} answers ${expectedStatus}${code === undefined ? '' : ` (got code ${code})`}`)
  t.match(sent.headers.get('x-request-id') ?? '', /\S/, `${what} carries X-Request-Id`)
  if (operationId !== null) {
    const body = /^(image\/|text\/event-stream)/.test(sent.contentType) ? sent.text : sent.json
    t.same(contract.check(operationId, sent.status, sent.contentType, body), [], `${what} conforms to the contract (${operationId} ${sent.status})`)
  }
  return sent
}

/** One HTTP call to the deployment, with its answer held against the operation's documented responses. */
export async function call (t: Test, operationId: string | null, expectedStatus: number, options: CallOptions): Promise<Sent> {
  return check(t, operationId, expectedStatus, options, await send(options))
}

/** Asserts the error envelope's code, read by the client's error class, and that its request id is the header's. */
export function expectError (t: Test, sent: Sent, code: ErrorCode) {
  const error = new PortalApiError(sent.status, sent.json, sent.headers)
  t.equal(error.code, code, `error code ${code}`)
  t.equal(error.requestId, sent.headers.get('x-request-id'), 'the envelope echoes X-Request-Id')
}

/** The TypeScript client on the deployment (optionally with a bearer token), every answer it receives held against the contract. */
export function smokeClient (t: Test, token?: string): PortalClient {
  const fetch = contractFetch((problems, what) => t.same(problems, [], what))
  return createPortalClient({ baseUrl: settings().baseUrl, fetch, ...(token === undefined ? {} : { token }) })
}

/** Asserts that a client call rejects with a PortalApiError of this status and code, carrying a request id; answers it. */
export async function refused (t: Test, pending: Promise<unknown>, status: number, code: ErrorCode): Promise<PortalApiError | undefined> {
  const error = await pending.then(() => undefined, (e: unknown) => e)
  if (!(error instanceof PortalApiError)) {
    t.fail(`expected PortalApiError ${code}, got ${error === undefined ? 'an answer' : String(error)}`)
    return undefined
  }
  t.equal(error.status, status, `answers ${status}`)
  t.equal(error.code, code, `error code ${code}`)
  t.match(error.requestId, /\S/, 'with the request id')
  return error
}

/** The longest the suite waits out the per-address limit of token minting (30 a minute) before it fails. */
const MINT_WAIT_LIMIT_MS = 70_000

/** Waits out a refused mint as Retry-After says (the client's retries), telling the test. */
const mintRetries = (t: Test) => ({ retries: 2, maxDelayMs: MINT_WAIT_LIMIT_MS, onRetry: ({ delayMs }: { delayMs: number }) => t.comment(`token minting is rate limited for this address: waiting ${delayMs / 1000} s as Retry-After says`) })

/**
 * Mints an AI token with raw HTTP (its headers, or a body a typed client cannot send), waiting out the per-address
 * limit with the client's retries, so that runs following each other within a minute still pass.
 */
export async function mint (t: Test, key: string | undefined, expectedStatus = 201, body?: unknown): Promise<Sent> {
  const options: CallOptions = { method: 'POST', path: '/v1/ai/tokens', token: key, body }
  return check(t, 'createAiToken', expectedStatus, options, await send(options, retryingFetch(mintRetries(t))))
}

/** The operation of a request: its method, and its path matched against the contract's path templates. */
export function operationOf (method: string, path: string): string | undefined {
  for (const [id, located] of contract.operations) {
    const pattern = new RegExp(`^${located.path.replace(/\{[^}]+\}/g, '[^/]+')}$`)
    if (located.method === method && pattern.test(path)) return id
  }
  return undefined
}

/** A fetch for the TypeScript client that holds every answer of an operation of the contract against it. */
export function contractFetch (report: (problems: string[], what: string) => void): Fetch {
  return async (request) => {
    const response = await fetch(request)
    const { pathname } = new URL(request.url)
    const operationId = operationOf(request.method, pathname)
    const contentType = response.headers.get('content-type') ?? ''
    if (operationId === undefined || /^image\//.test(contentType)) return response
    const text = await response.clone().text()
    const body = /json/.test(contentType) ? JSON.parse(text) as unknown : text
    report(contract.check(operationId, response.status, contentType, body), `${request.method} ${pathname} conforms (${operationId} ${response.status})`)
    return response
  }
}

const sources = new Map<string, TokenSource>()
const mintProblems: string[] = []

/**
 * An AI token of the smoke key (optionally for some features only) from the TypeScript client's token source,
 * minted once per test file and scope. On RATE_LIMITED the source waits as Retry-After says (at most
 * MINT_WAIT_LIMIT_MS), so runs following each other within a minute still pass; every mint's answer is held
 * against the contract.
 */
export async function mintToken (t: Test, features?: FeatureId[]): Promise<string> {
  const scope = features?.join(',') ?? '*'
  let source = sources.get(scope)
  if (source === undefined) {
    source = aiTokenSource({
      baseUrl: settings().baseUrl,
      credential: settings().apiKey,
      ...(features === undefined ? {} : { features }),
      fetch: contractFetch((problems) => mintProblems.push(...problems)),
      retry: mintRetries(t)
    })
    sources.set(scope, source)
  }
  const token = await source()
  t.same(mintProblems.splice(0), [], 'the mint conforms to the contract')
  return token
}

/** A user id of this run only, so repeated runs against one deployment never collide. */
export const runUserId = (label: string) => `smoke-${label}-${randomBytes(5).toString('hex')}`
