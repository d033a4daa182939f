import { setImmediate as yieldToLoop } from 'node:timers/promises'
import fp from 'fastify-plugin'
import type { CatalogSettingValue, SettingsCatalogValue } from '../schemas/settings-assistant.js'
import { estimatePromptTokens, estimateTokens, type ChatCall, type ChatEvent, type ChatProvider } from './chat.js'
import { ProviderError } from './provider-error.js'

export const SANDBOX_CHAT_MODEL = 'sandbox-catalog-1'
const MATCHES_SHOWN = 3
const WORDS_PER_DELTA = 6
const STOP_WORDS = new Set(['about', 'could', 'does', 'from', 'have', 'into', 'make', 'more', 'need', 'should', 'that', 'there',
  'this', 'want', 'what', 'when', 'where', 'which', 'with', 'would', 'your'])

/** Words reduced to a crude stem, so "sharper" meets "sharpening" and "exports" meets "exported". */
function stems (text: string): Set<string> {
  const words = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []
  return new Set(words.filter((w) => w.length >= 4 && !STOP_WORDS.has(w)).map((w) => w.slice(0, 5)))
}

/** A value the setting allows, picked without randomness: on for switches, the top of a list or range. */
function sampleValue (setting: CatalogSettingValue): boolean | number | string | undefined {
  switch (setting.type) {
    case 'boolean': return true
    case 'enum': return setting.values[setting.values.length - 1]
    case 'integer':
    case 'number': return setting.max
    case 'string': return undefined
  }
}

/**
 * The test-mode chat provider: deterministic and offline. It answers from the catalog with the settings whose
 * label or description shares words with the message, and suggests a value for each.
 */
export function createSandboxChat (catalog: SettingsCatalogValue) {
  const indexed = catalog.settings.map((setting) => ({ setting, stems: stems(`${setting.label} ${setting.description}`) }))

  function answer (call: ChatCall) {
    const message = [...call.messages].reverse().find((m) => m.role === 'user')?.content ?? ''
    const asked = stems(message)
    const matches = indexed
      .map(({ setting, stems: own }) => ({ setting, score: [...asked].filter((s) => own.has(s)).length }))
      .filter((m) => m.score > 0 && sampleValue(m.setting) !== undefined)
      .sort((a, b) => b.score - a.score)
      .slice(0, MATCHES_SHOWN)
    const text = matches.length === 0
      ? 'Test mode (sandbox, no AI model was called): no setting in the catalog matches your question. Try words from setting names, such as "sharpening" or "autosave".'
      : `Test mode (sandbox, no AI model was called). Settings that match your question: ${
          matches.map(({ setting }) => `${setting.label} (${setting.panel} panel): ${setting.description}`).join(' ')}`
    const suggestions = matches.map(({ setting }) => ({ settingId: setting.id, value: sampleValue(setting), reason: `Matches your question: ${setting.label}.` }))
    const toolArguments = suggestions.length === 0 ? [] : [JSON.stringify({ suggestions })]
    const usage = { inputTokens: estimatePromptTokens(call), outputTokens: estimateTokens(text + toolArguments.join('')) }
    const toolCalls = toolArguments.map((args) => ({ id: 'call_sandbox_suggest', name: 'suggest_settings', arguments: args }))
    return { text, toolArguments, toolCalls, usage }
  }

  const cancelled = () => new ProviderError('PROVIDER_ERROR', 'The call was cancelled by the client.')

  return {
    name: 'sandbox',
    model: SANDBOX_CHAT_MODEL,

    async * stream (call: ChatCall): AsyncGenerator<ChatEvent> {
      const { text, toolCalls, usage } = answer(call)
      yield * wordDeltas(text, call.signal, cancelled)
      for (const c of toolCalls) yield { type: 'tool', ...c }
      yield { type: 'end', finishReason: 'stop', usage }
    },

    async complete (call: ChatCall) {
      if (call.signal.aborted) throw cancelled()
      return { ...answer(call), finishReason: 'stop' as const }
    }
  } satisfies ChatProvider
}

/** Deltas of a sandbox reply, a turn of the event loop apart (as a network stream has, so a client abort is seen). */
async function * wordDeltas (text: string, signal: AbortSignal, cancelled: () => Error): AsyncGenerator<ChatEvent> {
  const words = text.split(' ')
  for (let i = 0; i < words.length; i += WORDS_PER_DELTA) {
    await yieldToLoop()
    if (signal.aborted) throw cancelled()
    yield { type: 'delta', text: (i === 0 ? '' : ' ') + words.slice(i, i + WORDS_PER_DELTA).join(' ') }
  }
}

/**
 * The test-mode provider of the model catalog: deterministic and offline, it answers for every model and says
 * which one it stands for, what it was asked (in counts, never echoing the text), and how long the history was.
 */
export function createSandboxModels () {
  const cancelled = () => new ProviderError('PROVIDER_ERROR', 'The call was cancelled by the client.')
  function answer (call: ChatCall) {
    const question = [...call.messages].reverse().find((m) => m.role === 'user')?.content ?? ''
    const words = question.split(/\s+/).filter((w) => w !== '').length
    const turns = call.messages.filter((m) => m.role !== 'system').length
    const said = `Test mode (sandbox, no AI model was called), standing in for ${call.model ?? 'the routed model'}: ` +
      `your message has ${words} ${words === 1 ? 'word' : 'words'}, and this conversation has ${turns} ${turns === 1 ? 'turn' : 'turns'} so far.`
    // Structured output gets JSON (of no particular schema); a tool the call insists on is called with no arguments.
    const text = call.responseFormat === undefined ? said : JSON.stringify({ sandbox: said })
    const choice = call.toolChoice
    const forced = call.tools.length === 0 || choice === undefined || choice === 'auto' || choice === 'none'
      ? undefined
      : typeof choice === 'string' ? call.tools[0] : call.tools.find((tool) => tool.name === choice.name)
    const toolCalls = forced === undefined ? [] : [{ id: `call_sandbox_${turns}`, name: forced.name, arguments: '{}' }]
    const usage = { inputTokens: estimatePromptTokens(call), outputTokens: estimateTokens(text + toolCalls.map((c) => c.name + c.arguments).join('')) }
    return { text, toolCalls, usage }
  }
  return {
    name: 'sandbox',
    model: 'sandbox',
    async * stream (call: ChatCall): AsyncGenerator<ChatEvent> {
      const { text, toolCalls, usage } = answer(call)
      yield * wordDeltas(text, call.signal, cancelled)
      for (const c of toolCalls) yield { type: 'tool', ...c }
      yield { type: 'end', finishReason: 'stop', usage }
    },
    async complete (call: ChatCall) {
      if (call.signal.aborted) throw cancelled()
      const { text, toolCalls, usage } = answer(call)
      return { text, toolArguments: toolCalls.map((c) => c.arguments), toolCalls, finishReason: 'stop' as const, usage }
    }
  } satisfies ChatProvider
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The chat provider of test-mode tokens; never used for live ones. */
    sandboxChat: ReturnType<typeof createSandboxChat>
  }
}

export default fp(async function sandboxChat (app) {
  app.decorate('sandboxChat', createSandboxChat(app.settingsAssistant.catalog))
}, { name: 'sandbox-chat', fastify: '5.x', dependencies: ['settings-assistant'] })
