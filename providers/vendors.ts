import type { FastifyBaseLogger } from 'fastify'
import type { VendorId } from '../schemas/models.js'
import type { StopReason } from './attempt.js'
import { ProviderError } from './provider-error.js'
import { retryAfterMs } from './retry.js'

/**
 * What the service knows of each model vendor: its API's default base URL, the wire format it speaks, and how
 * its answers say that the account is out of money or the key is refused (each vendor says it differently).
 */
export interface VendorInfo {
  id: VendorId
  name: string
  /** `openai`: the Chat Completions format (the OpenAI SDK); `anthropic`: the Messages API (Anthropic's SDK). */
  api: 'openai' | 'anthropic'
  defaultBaseUrl: string
  /** Whether the vendor documents a field for an end-user id (the keyed hash goes there; otherwise nothing does). */
  userField: 'safety_identifier' | 'user' | 'metadata.user_id' | null
  /** Whether the vendor's tokenizer is public and bundled (o200k_base): counts are exact, otherwise estimated. */
  exactTokens: boolean
}

export const VENDORS: Record<VendorId, VendorInfo> = {
  openai: { id: 'openai', name: 'OpenAI', api: 'openai', defaultBaseUrl: 'https://api.openai.com/v1', userField: 'safety_identifier', exactTokens: true },
  anthropic: { id: 'anthropic', name: 'Anthropic', api: 'anthropic', defaultBaseUrl: 'https://api.anthropic.com', userField: 'metadata.user_id', exactTokens: false },
  qwen: { id: 'qwen', name: 'Alibaba Cloud Model Studio (Qwen)', api: 'openai', defaultBaseUrl: 'https://dashscope-intl.aliyuncs.com/compatible-mode/v1', userField: null, exactTokens: false },
  deepseek: { id: 'deepseek', name: 'DeepSeek', api: 'openai', defaultBaseUrl: 'https://api.deepseek.com/v1', userField: null, exactTokens: false },
  xai: { id: 'xai', name: 'xAI (Grok)', api: 'openai', defaultBaseUrl: 'https://api.x.ai/v1', userField: 'user', exactTokens: false },
  gemini: { id: 'gemini', name: 'Google Gemini (OpenAI-compatible endpoint)', api: 'openai', defaultBaseUrl: 'https://generativelanguage.googleapis.com/v1beta/openai', userField: null, exactTokens: false }
}

/** The variable holding a vendor's key, named in operator log lines. */
export const keyVariable = (vendor: VendorId) => `${vendor.toUpperCase()}_API_KEY`

/** A vendor's error answer, as far as it is needed to classify it (the message is matched, never logged). */
export interface VendorErrorAnswer { status: number, code?: string | null, type?: string | null, message: string }

/**
 * Why a vendor's error answer means it cannot serve anyone until an operator acts: `no-credit` (the account is out
 * of money or over its spending limit) or `key-refused` (the key is wrong, revoked or blocked); null otherwise.
 * Sources: each vendor's documented error codes (OpenAI 429 `insufficient_quota`; Anthropic 402 `billing_error`
 * and 400 "credit balance is too low"; DeepSeek 402 "Insufficient Balance"; Qwen 400 `Arrearage`; xAI 400
 * "incorrect API key" and 403 team blocked or out of credits; Gemini 400 `API_KEY_INVALID` and
 * FAILED_PRECONDITION "enable billing"), and 401/403 everywhere.
 */
export function vendorRefusal (vendor: VendorId, answer: VendorErrorAnswer): 'no-credit' | 'key-refused' | null {
  const { status, code, type, message } = answer
  if (status === 401) return 'key-refused'
  if (status === 402) return 'no-credit'
  if (status === 403) return /credit|billing|balance|spending/i.test(message) ? 'no-credit' : 'key-refused'
  switch (vendor) {
    case 'openai':
      return status === 429 && code === 'insufficient_quota' ? 'no-credit' : null
    case 'anthropic':
      return status === 400 && (type === 'billing_error' || /credit balance/i.test(message)) ? 'no-credit' : null
    case 'qwen':
      return status === 400 && (code === 'Arrearage' || /arrearage|good standing/i.test(message)) ? 'no-credit' : null
    case 'xai':
      if (status === 400 && /api key/i.test(message)) return 'key-refused'
      return status === 429 && /credits|spending limit/i.test(message) ? 'no-credit' : null
    case 'gemini':
      if (status === 400 && /API_KEY_INVALID|API key not valid/i.test(message)) return 'key-refused'
      return status === 400 && /billing/i.test(message) ? 'no-credit' : null
    case 'deepseek':
      return null
  }
}

/** How a vendor call failed, in terms both SDKs can be reduced to. */
export type VendorFailure =
  | { kind: 'stopped', reason: StopReason }
  | { kind: 'timeout' }
  | { kind: 'connection' }
  | { kind: 'http', answer: VendorErrorAnswer, headers?: Headers }
  | { kind: 'unreadable' }

/** A vendor failure as the contract's error, retryable where another attempt may help; operator faults are logged at error level. */
export function vendorError (vendor: VendorId, failure: VendorFailure, log: FastifyBaseLogger, model?: string): ProviderError {
  const name = VENDORS[vendor].name
  switch (failure.kind) {
    case 'stopped':
      if (failure.reason === 'client') return new ProviderError('PROVIDER_ERROR', 'The call was cancelled by the client.')
      return new ProviderError('PROVIDER_TIMEOUT', failure.reason === 'idle'
        ? 'The model vendor sent nothing within the time limit.'
        : 'The model vendor did not finish within the time limit.')
    case 'timeout':
      return new ProviderError('PROVIDER_TIMEOUT', 'The model vendor did not finish within the time limit.')
    case 'connection':
      return new ProviderError('PROVIDER_UNAVAILABLE', 'The model vendor cannot be reached: retry later.', { retry: true })
    case 'unreadable':
      return new ProviderError('PROVIDER_ERROR', 'The model vendor sent a response that cannot be read.')
    case 'http': break
  }
  const { status } = failure.answer
  const refusal = vendorRefusal(vendor, failure.answer)
  if (refusal !== null) {
    log.error({ vendor, status, refusal }, refusal === 'no-credit'
      ? `${name} refused the call: the account is out of credit (top it up); other vendors serve meanwhile`
      : `${name} refused the configured key (${keyVariable(vendor)}): fix it; other vendors serve meanwhile`)
    return new ProviderError('PROVIDER_UNAVAILABLE', 'The model vendor is not available right now.', { retry: false }, {}, refusal)
  }
  if (status === 429) {
    const after = retryAfterMs(failure.headers)
    const headers: Record<string, string> = after === undefined ? {} : { 'retry-after': String(Math.max(1, Math.ceil(after / 1000))) }
    return new ProviderError('PROVIDER_UNAVAILABLE', 'The model vendor is busy: retry later.', { retry: true, afterMs: after }, headers)
  }
  if (status >= 500 || status === 408 || status === 409) {
    return new ProviderError('PROVIDER_ERROR', `The model vendor failed (HTTP ${status}).`, { retry: true, afterMs: retryAfterMs(failure.headers) })
  }
  if (status === 404) log.error({ vendor, status, model }, `${name} does not know the model it was asked for: check the model catalog (MODELS_FILE) or OPENAI_MODEL`)
  return new ProviderError('PROVIDER_ERROR', `The model vendor refused the request (HTTP ${status}).`)
}
