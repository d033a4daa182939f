import { Ajv } from 'ajv'
import { messageText, type ChatMessage, type ChatTool, type ChatToolCall, type ToolChoice } from '../providers/chat.js'
import { tokenCounter } from '../providers/tokens.js'
import { VENDORS } from '../providers/vendors.js'
import {
  MAX_OPENAI_TOTAL_CHARS, MAX_TOOL_SCHEMA_CHARS, UNSUPPORTED_FIELDS, type ChatCompletionRequestValue, type OpenAIMessageValue
} from '../schemas/openai.js'
import { replyLimit } from './chats.js'
import { invalidBody, type FieldProblem } from './errors.js'
import type { ModelEntry } from './models.js'

// Reading an OpenAI Chat Completions request into the service's chat call: every rule the wire format leaves to
// the server (roles in order, tool rounds answered, JSON Schemas that are schemas) checked with the field named.

/** Framing tokens per message of the chat format. */
const MESSAGE_OVERHEAD_TOKENS = 4

/** Fields of UNSUPPORTED_FIELDS that the schema takes in their neutral values (n: 1, logprobs: false, modalities: ["text"]). */
const NEUTRAL_IN_SCHEMA = new Set(['n', 'logprobs', 'modalities'])

/**
 * OpenAI fields the service does not offer, found before the schema check so the answer says why. Such a field sent
 * as null (OpenAI's "not set") is taken out of the body, as if it had not been sent.
 */
export function unsupportedFields (body: unknown): FieldProblem[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return []
  const record = body as Record<string, unknown>
  const problems: FieldProblem[] = []
  for (const [field, why] of Object.entries(UNSUPPORTED_FIELDS)) {
    if (!Object.hasOwn(record, field)) continue
    const value = record[field]
    if (value === null && !NEUTRAL_IN_SCHEMA.has(field)) delete record[field]
    if (value === null || (field === 'n' && value === 1) || (field === 'logprobs' && value === false)) continue
    if (field === 'modalities' && Array.isArray(value) && value.every((m) => m === 'text')) continue
    problems.push({ path: `/${field}`, message: why })
  }
  return problems
}

/** A request as the providers take it. */
export interface CompletionInput {
  messages: ChatMessage[]
  tools: ChatTool[]
  toolChoice?: ToolChoice
  temperature?: number
  stop?: string[]
  responseFormat?: { name: string, schema: Record<string, unknown>, strict?: boolean }
  /** The caller's reply limit; the service's default for the model when absent. */
  maxTokens?: number
  stream: boolean
  includeUsage: boolean
  /** The last user turn: what moderation checks. */
  lastUserText: string
}

const schemaChecker = new Ajv({ strict: false, validateSchema: false })

/** Whether an object is a JSON Schema (draft-07 meta-schema, at most MAX_TOOL_SCHEMA_CHARS of JSON); the reason when it is not. */
function schemaProblem (schema: Record<string, unknown>): string | null {
  if (JSON.stringify(schema).length > MAX_TOOL_SCHEMA_CHARS) return `must be at most ${MAX_TOOL_SCHEMA_CHARS.toLocaleString('en')} characters of JSON`
  if (schemaChecker.validateSchema(schema) === true) return null
  // The first of ajv's reasons without its path: the path would name properties of the caller's schema.
  const first = (schemaChecker.errors as Array<{ message: string }>)[0] as { message: string }
  return `is not a JSON Schema (draft-07): a keyword ${first.message}`
}

function contentText (content: OpenAIMessageValue['content'], at: string, problems: FieldProblem[]): string | null {
  if (content === undefined || content === null) return null
  if (typeof content === 'string') return content
  let text = ''
  for (const [j, part] of content.entries()) {
    if (part.type !== 'text') problems.push({ path: `${at}/content/${j}/type`, message: 'must be text: images, audio and files are not supported' })
    else if (typeof part.text !== 'string') problems.push({ path: `${at}/content/${j}/text`, message: 'must be a string' })
    else text += part.text
  }
  return text
}

/** Checks and converts a request whose shape the schema has passed; every problem found is reported at once. */
export function readCompletionRequest (body: ChatCompletionRequestValue): CompletionInput {
  const problems: FieldProblem[] = []
  const messages: ChatMessage[] = []
  /** Calls of the latest assistant turn that no tool turn has answered yet, by id (with the turn that made them). */
  const open = new Map<string, number>()
  let chars = 0
  let lastUserText: string | null = null
  for (const [i, m] of body.messages.entries()) {
    const at = `/messages/${i}`
    const found = problems.length
    const text = contentText(m.content, at, problems)
    const partsRefused = problems.length > found
    chars += text?.length ?? 0
    if (m.role !== 'assistant' && m.tool_calls !== undefined) problems.push({ path: `${at}/tool_calls`, message: 'only assistant messages carry tool calls' })
    if (m.role !== 'tool' && m.tool_call_id !== undefined) problems.push({ path: `${at}/tool_call_id`, message: 'only tool messages answer a tool call' })
    if (m.role !== 'tool' && open.size > 0) {
      problems.push({ path: `${at}/role`, message: `the tool calls of message ${open.values().next().value as number} must each be answered by a tool message first` })
      open.clear()
    }
    switch (m.role) {
      case 'system':
      case 'developer':
      case 'user':
        if (!partsRefused && (text === null || (m.role === 'user' && text === ''))) problems.push({ path: `${at}/content`, message: 'must be non-empty text' })
        messages.push({ role: m.role === 'user' ? 'user' : 'system', content: text ?? '' })
        if (m.role === 'user') lastUserText = text
        break
      case 'assistant': {
        const toolCalls: ChatToolCall[] = []
        for (const [j, call] of (m.tool_calls ?? []).entries()) {
          let parsed: unknown
          try { parsed = JSON.parse(call.function.arguments) } catch { parsed = undefined }
          if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
            problems.push({ path: `${at}/tool_calls/${j}/function/arguments`, message: 'must be the JSON text of an object' })
          }
          if (open.has(call.id)) problems.push({ path: `${at}/tool_calls/${j}/id`, message: 'is used twice' })
          open.set(call.id, i)
          chars += call.function.name.length + call.function.arguments.length
          toolCalls.push({ id: call.id, name: call.function.name, arguments: call.function.arguments })
        }
        if (text === null && toolCalls.length === 0) problems.push({ path: `${at}/content`, message: 'is required unless the message has tool_calls' })
        messages.push(toolCalls.length === 0 ? { role: 'assistant', content: text ?? '' } : { role: 'assistant', content: text ?? '', toolCalls })
        break
      }
      case 'tool':
        if (m.tool_call_id === undefined) {
          problems.push({ path: `${at}/tool_call_id`, message: 'is required on a tool message' })
        } else if (!open.delete(m.tool_call_id)) {
          problems.push({ path: `${at}/tool_call_id`, message: 'answers no open tool call of the assistant message before it' })
        }
        if (text === null) problems.push({ path: `${at}/content`, message: 'is required on a tool message' })
        messages.push({ role: 'tool', toolCallId: m.tool_call_id ?? '', content: text ?? '' })
        break
    }
  }
  if (open.size > 0) problems.push({ path: '/messages', message: 'the last assistant message\'s tool calls must each be answered by a tool message' })
  if (lastUserText === null) problems.push({ path: '/messages', message: 'must contain a user message' })

  const tools: ChatTool[] = []
  const names = new Set<string>()
  for (const [i, tool] of (body.tools ?? []).entries()) {
    const parameters = tool.function.parameters ?? { type: 'object', properties: {} }
    const problem = schemaProblem(parameters)
    if (problem !== null) problems.push({ path: `/tools/${i}/function/parameters`, message: problem })
    else if (parameters.type !== 'object') problems.push({ path: `/tools/${i}/function/parameters/type`, message: 'must be "object": a tool takes an object of arguments' })
    if (names.has(tool.function.name)) problems.push({ path: `/tools/${i}/function/name`, message: 'is used by another tool' })
    names.add(tool.function.name)
    chars += JSON.stringify(tool).length
    tools.push({ name: tool.function.name, description: tool.function.description ?? '', parameters })
  }
  let toolChoice: ToolChoice | undefined
  if (body.tool_choice !== undefined) {
    toolChoice = typeof body.tool_choice === 'string' ? body.tool_choice : { name: body.tool_choice.function.name }
    if (tools.length === 0) problems.push({ path: '/tool_choice', message: 'needs tools' })
    else if (typeof toolChoice === 'object' && !names.has(toolChoice.name)) problems.push({ path: '/tool_choice/function/name', message: 'is not one of the tools' })
  }

  let responseFormat: CompletionInput['responseFormat']
  if (body.response_format?.type === 'json_schema') {
    const format = body.response_format.json_schema
    const problem = format.schema === undefined ? 'is required' : schemaProblem(format.schema)
    if (problem !== null) problems.push({ path: '/response_format/json_schema/schema', message: problem })
    responseFormat = { name: format.name, schema: format.schema ?? {}, ...(format.strict == null ? {} : { strict: format.strict }) }
  }

  if (body.max_tokens != null && body.max_completion_tokens != null) problems.push({ path: '/max_completion_tokens', message: 'give max_tokens or max_completion_tokens, not both' })
  const stream = body.stream === true
  if (!stream && body.stream_options != null) problems.push({ path: '/stream_options', message: 'is only allowed with stream: true' })
  if (chars > MAX_OPENAI_TOTAL_CHARS) problems.push({ path: '/messages', message: `must hold at most ${MAX_OPENAI_TOTAL_CHARS.toLocaleString('en')} characters in all (texts, tool arguments and tools)` })
  if (problems.length > 0) throw invalidBody(...problems)

  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined
  const stop = body.stop == null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop
  return {
    messages,
    tools,
    ...(toolChoice === undefined ? {} : { toolChoice }),
    ...(body.temperature == null ? {} : { temperature: body.temperature }),
    ...(stop === undefined || stop.length === 0 ? {} : { stop }),
    ...(responseFormat === undefined ? {} : { responseFormat }),
    ...(maxTokens === undefined ? {} : { maxTokens }),
    stream,
    includeUsage: body.stream_options?.include_usage === true,
    lastUserText: lastUserText as string
  }
}

/** Why a model cannot serve this request as asked (the field and the reason), or null. */
export function modelProblem (model: ModelEntry, input: CompletionInput): FieldProblem | null {
  const anthropic = VENDORS[model.vendor].api === 'anthropic'
  if (input.tools.length > 0 && !model.capabilities.includes('tools')) return { path: '/tools', message: `${model.id} cannot call tools` }
  if (input.responseFormat !== undefined && anthropic) return { path: '/response_format', message: `json_schema is not offered for ${model.id} (Anthropic): use a model of another vendor` }
  if (input.temperature !== undefined && input.temperature > 1 && anthropic) return { path: '/temperature', message: `must be at most 1 for ${model.id} (Anthropic)` }
  if (input.maxTokens !== undefined && input.maxTokens > model.maxOutputTokens) return { path: '/max_tokens', message: `must be at most ${model.maxOutputTokens} for ${model.id}` }
  return null
}

/** The reply limit of a call on this model: the caller's, or the service's default for it. */
export const outputLimit = (model: ModelEntry, input: CompletionInput) => input.maxTokens ?? replyLimit(model)

/** The prompt's tokens on this model's tokenizer (exact where it is public, estimated otherwise). */
export async function promptTokens (model: ModelEntry, input: CompletionInput): Promise<number> {
  const count = await tokenCounter(VENDORS[model.vendor].exactTokens)
  let tokens = 0
  for (const m of input.messages) {
    tokens += MESSAGE_OVERHEAD_TOKENS + count(messageText(m))
  }
  for (const tool of input.tools) tokens += count(JSON.stringify(tool))
  return tokens
}
