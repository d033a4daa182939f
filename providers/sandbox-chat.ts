import { setImmediate as yieldToLoop } from 'node:timers/promises'
import fp from 'fastify-plugin'
import type { CatalogSettingValue, SettingsCatalogValue } from '../schemas/settings-assistant.js'
import { estimatePromptTokens, estimateTokens, type ChatCall, type ChatEvent, type ChatProvider, type ChatToolCall } from './chat.js'
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

/** A tool result as the assistant tools write it; null for any other text (a caller's own tool of the same name). */
function toolResult (content: string): { events?: Array<{ title: string, start: string }>, error?: string } | null {
  try {
    return JSON.parse(content) as { events?: Array<{ title: string, start: string }>, error?: string } | null
  } catch {
    return null
  }
}

/** Deltas of a sandbox reply, a turn of the event loop apart (as a network stream has, so a client abort is seen). */
async function * wordDeltas (text: string, signal: AbortSignal, cancelled: () => Error): AsyncGenerator<ChatEvent> {
  // A reply that is only a tool call has no text, and no delta.
  const words = text === '' ? [] : text.split(' ')
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
    const assistant = assistantAnswer(call, question)
    // Structured output gets JSON (of no particular schema); a tool the call insists on is called with no arguments.
    const text = assistant?.text ?? (call.responseFormat === undefined ? said : JSON.stringify({ sandbox: said }))
    const choice = call.toolChoice
    const forced = call.tools.length === 0 || choice === undefined || choice === 'auto' || choice === 'none'
      ? undefined
      : typeof choice === 'string' ? call.tools[0] : call.tools.find((tool) => tool.name === choice.name)
    const toolCalls = assistant?.toolCalls ?? (forced === undefined ? [] : [{ id: `call_sandbox_${turns}`, name: forced.name, arguments: '{}' }])
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

const ASKS_CALENDAR = /\b(calendar|schedule|meetings?|agenda|week|today|tomorrow)\b/i
const ASKS_TASK = /\b(remind|task|to-?do)\b/i

/**
 * The sandbox as the productivity assistant (a chat with tools, auto choice): it reads the calendar when asked about
 * the schedule, proposes a task when asked to be reminded, and answers from what the tools gave. Null for other calls.
 */
function assistantAnswer (call: ChatCall, question: string): { text: string, toolCalls: ChatToolCall[] } | null {
  const offered = new Set(call.tools.map((tool) => tool.name))
  if (!offered.has('list_calendar_events') && !offered.has('create_task')) return null
  const may = call.toolChoice === undefined || call.toolChoice === 'auto'
  const lastCalls = [...call.messages].reverse().find((m) => m.role === 'assistant' && m.toolCalls !== undefined)
  const called = new Set(call.messages.flatMap((m) => m.role === 'assistant' ? (m.toolCalls ?? []).map((c) => c.name) : []))
  const id = `call_sandbox_${called.size + 1}`
  if (may && offered.has('list_calendar_events') && ASKS_CALENDAR.test(question) && !called.has('list_calendar_events')) {
    const from = new Date(`${new Date().toISOString().slice(0, 10)}T00:00:00.000Z`)
    const to = new Date(from.getTime() + 7 * 86_400_000)
    return { text: 'Let me look at your calendar.', toolCalls: [{ id, name: 'list_calendar_events', arguments: JSON.stringify({ from: from.toISOString(), to: to.toISOString() }) }] }
  }
  if (may && offered.has('create_task') && ASKS_TASK.test(question) && !called.has('create_task')) {
    const title = question.replace(/^.*?\bremind me to\b\s*/i, '').replace(/[.?!\s]+$/, '').slice(0, 120)
    const due = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10)
    return { text: '', toolCalls: [{ id, name: 'create_task', arguments: JSON.stringify({ title: title === '' ? 'Follow up' : title, dueDate: due }) }] }
  }
  if (lastCalls === undefined) return null
  // Answers from every tool result of the conversation.
  const parts = ['Test mode (sandbox, no AI model was called).']
  for (const m of call.messages) {
    if (m.role !== 'tool') continue
    const result = toolResult(m.content)
    if (result === null) parts.push('A tool answered.')
    else if (result.error !== undefined) parts.push(`A tool answered: ${result.error}`)
    else if (result.events !== undefined) parts.push(result.events.length === 0 ? 'Your calendar has no events in the next 7 days.' : `Your next events: ${result.events.map((e) => `${e.title} (${e.start})`).join('; ')}.`)
    else parts.push('I proposed a task: confirm it in the app to create it.')
  }
  return { text: parts.join(' '), toolCalls: [] }
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
