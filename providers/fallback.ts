import type { FastifyBaseLogger } from 'fastify'
import { errorOutcome, type ProviderError } from './provider-error.js'

/** Failures of one provider that the next one of a fallback list may not have. */
export const FALLBACK_CODES = new Set(['PROVIDER_UNAVAILABLE', 'PROVIDER_ERROR', 'PROVIDER_TIMEOUT'])

/** Told of each provider attempt: the provider, `ok` or what ended it (a code, `client-aborted`), and its seconds. */
export type AttemptObserver = (provider: string, outcome: string, seconds: number) => void

/**
 * Tries `providers` in order until one serves: a provider that is unavailable, failing or too slow hands over to the
 * next; any other failure (content refused, a bad request) and a client that left end the call. Each failure is
 * logged as `<what> provider failed` with the provider and the code, never the error's text.
 */
export async function firstThatServes<P extends { name: string }, T> (
  providers: readonly P[], attempt: (provider: P) => Promise<T>,
  opts: { signal: AbortSignal, log: FastifyBaseLogger, what: string, observe?: AttemptObserver }
): Promise<{ result: T, used: P }> {
  const last = providers.length - 1
  for (const [i, provider] of providers.entries()) {
    const started = performance.now()
    const took = () => (performance.now() - started) / 1000
    try {
      const result = await attempt(provider)
      opts.observe?.(provider.name, 'ok', took())
      return { result, used: provider }
    } catch (err) {
      opts.observe?.(provider.name, opts.signal.aborted ? 'client-aborted' : errorOutcome(err), took())
      opts.log.warn({ provider: provider.name, code: (err as ProviderError).code }, `${opts.what} provider failed`)
      if (i === last || !FALLBACK_CODES.has((err as ProviderError).code) || opts.signal.aborted) throw err
    }
  }
  throw new Error(`no ${opts.what} provider to try`)
}
