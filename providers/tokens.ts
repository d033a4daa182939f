import { estimateTokens } from './chat.js'

type Counter = (text: string) => number
let exact: Promise<Counter> | undefined

/**
 * Tokens of a text for a vendor's model: exact with OpenAI's public o200k_base tokenizer (gpt-tokenizer, loaded
 * with the first count), the documented estimate of about four characters a token for vendors whose tokenizer is
 * not public or not bundled. Used for reservations and for cutting a history to a model's context.
 */
export async function tokenCounter (exactTokens: boolean): Promise<Counter> {
  if (!exactTokens) return estimateTokens
  exact ??= import('gpt-tokenizer/encoding/o200k_base').then((m) => (text: string) => m.countTokens(text))
  return exact
}
