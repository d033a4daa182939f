import { AppError } from '../plugins/errors.js'
import type { ErrorCodeName } from '../schemas/errors.js'
import type { RetryVerdict } from './retry.js'

/** Why a vendor cannot serve anyone until an operator acts: out of money, or its key refused. */
export type VendorRefusal = 'no-credit' | 'key-refused'

/** A provider failure in the contract's terms, with whether another attempt may help. */
export class ProviderError extends AppError {
  readonly retry: RetryVerdict
  /** Set when the vendor refused the account itself: never retried there; another vendor may serve. */
  readonly refusal: VendorRefusal | null
  constructor (code: ErrorCodeName, message: string, retry: RetryVerdict = { retry: false }, headers: Record<string, string> = {}, refusal: VendorRefusal | null = null) {
    super(code, message, undefined, headers)
    this.retry = retry
    this.refusal = refusal
  }
}

/** What ended a failed call, for metrics and spans: its error code, or `failed` when it has none. */
export const errorOutcome = (err: unknown): string => {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : 'failed'
}
