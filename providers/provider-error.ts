import { AppError } from '../plugins/errors.js'
import type { ErrorCodeName } from '../schemas/errors.js'
import type { RetryVerdict } from './retry.js'

/** A provider failure in the contract's terms, with whether another attempt may help. */
export class ProviderError extends AppError {
  readonly retry: RetryVerdict
  constructor (code: ErrorCodeName, message: string, retry: RetryVerdict = { retry: false }, headers: Record<string, string> = {}) {
    super(code, message, undefined, headers)
    this.retry = retry
  }
}
