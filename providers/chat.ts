/** A function the model may call; its arguments come back as JSON text (`tool` events). */
export interface ChatTool { name: string, description: string, parameters: Record<string, unknown> }

/** A tool call of the model: its id (the vendor's), the tool's name and its arguments as JSON text. */
export interface ChatToolCall { id: string, name: string, arguments: string }

/**
 * A turn of the prompt. The service's own features send text turns only; the OpenAI-compatible surface passes
 * on the caller's tool rounds too (an assistant turn with its tool calls, then a `tool` turn answering each).
 */
export type ChatMessage =
  | { role: 'system' | 'user', content: string }
  | { role: 'assistant', content: string, toolCalls?: ChatToolCall[] }
  | { role: 'tool', content: string, toolCallId: string }

/** Which tool the model may call: any or none (`auto`), none, at least one (`required`), or the one named. */
export type ToolChoice = 'auto' | 'none' | 'required' | { name: string }

/** What a chat provider is asked: the whole prompt (built by the service), its tools, the user's keyed hash. */
export interface ChatCall {
  messages: ChatMessage[]
  tools: ChatTool[]
  /** Default `auto` when there are tools. */
  toolChoice?: ToolChoice
  /** Sampling temperature, as the caller asked (0–2 on Chat Completions, 0–1 on Anthropic); the vendor's default when absent. */
  temperature?: number
  /** Sequences that end the reply (at most 4). */
  stop?: string[]
  /** The vendor's model name; the provider's own `model` when absent. */
  model?: string
  /** Keyed hash of the user id: the only identity a provider sees (vendors without a documented field get none). */
  user: string
  maxOutputTokens: number
  /** Structured output: the reply is JSON of this schema (OpenAI's `response_format` json_schema; strict unless said otherwise). */
  responseFormat?: { name: string, schema: Record<string, unknown>, strict?: boolean }
  /** Aborts the call (the client went away, or the server is closing). */
  signal: AbortSignal
}

export interface ChatUsage { inputTokens: number, outputTokens: number }

/** A provider's finish reason, in the contract's words. */
export type FinishReason = 'stop' | 'length' | 'content_filter'

/** The events of a call, in order: text deltas, then complete tool-call arguments, then one `end`. */
export type ChatEvent =
  | { type: 'delta', text: string }
  | { type: 'tool', id: string, name: string, arguments: string }
  | { type: 'end', finishReason: FinishReason, usage: ChatUsage | null }

/** A whole reply: its text, the arguments of each tool call (in order), why it ended, the vendor's counts. */
export interface ChatCompletion {
  text: string
  toolArguments: string[]
  /** The tool calls whole: id, name and arguments. */
  toolCalls: ChatToolCall[]
  finishReason: FinishReason
  usage: ChatUsage | null
}

export interface ChatProvider {
  /** Name in the ledger and the AI-Provider header. */
  readonly name: string
  readonly model: string
  /**
   * Streams one call. Errors before the first event may have been retried; errors after it are thrown as
   * they come (an AppError with the contract's code).
   */
  stream: (call: ChatCall) => AsyncIterable<ChatEvent>
  /** One call, whole reply at once. */
  complete: (call: ChatCall) => Promise<ChatCompletion>
}

/**
 * Tokens of a text, estimated when a provider sends no count (about four characters a token for English;
 * rounded up, so an estimate never reads zero for text that exists).
 */
export function estimateTokens (text: string): number {
  return Math.ceil(text.length / 4)
}

/** Per-message framing tokens of the chat format. */
const MESSAGE_OVERHEAD_TOKENS = 4

/** The text of a turn as a tokenizer counts it: its content, and the name and arguments of its tool calls. */
export function messageText (message: ChatMessage): string {
  if (message.role !== 'assistant' || message.toolCalls === undefined) return message.content
  return message.content + message.toolCalls.map((c) => c.name + c.arguments).join('')
}

export function estimatePromptTokens (call: Pick<ChatCall, 'messages' | 'tools'>): number {
  return call.messages.reduce((sum, m) => sum + MESSAGE_OVERHEAD_TOKENS + estimateTokens(messageText(m)), 0) +
    call.tools.reduce((sum, tool) => sum + estimateTokens(JSON.stringify(tool)), 0)
}

export function toFinishReason (reason: string | null | undefined): FinishReason {
  return reason === 'length' || reason === 'content_filter' ? reason : 'stop'
}
