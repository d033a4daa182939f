import type { VendorId } from '../schemas/models.js'

/** A key per model vendor, recognisable in a leak, and the environment that configures all six. */
export const VENDOR_KEYS: Record<VendorId, string> = {
  openai: 'sk-canary-openai-0123456789',
  anthropic: 'sk-ant-canary-0123456789',
  qwen: 'sk-canary-qwen-0123456789',
  deepseek: 'sk-canary-deepseek-0123456789',
  xai: 'xai-canary-0123456789',
  gemini: 'AIza-canary-gemini-0123456789'
}
export const VENDOR_ENV = Object.fromEntries(Object.entries(VENDOR_KEYS).map(([vendor, key]) => [`${vendor.toUpperCase()}_API_KEY`, key]))

/** A model of the bundled catalog for each vendor (none of them premium-only on the pro plan). */
export const MODEL_OF: Record<VendorId, string> = {
  openai: 'gpt-4o-mini',
  anthropic: 'claude-haiku-4-5',
  qwen: 'qwen-plus',
  deepseek: 'deepseek-chat',
  xai: 'grok-3-mini',
  gemini: 'gemini-2.5-flash'
}
