/** A function the model may call; its arguments come back as JSON text (`tool` events). */
export interface ChatTool { name: string, description: string, parameters: Record<string, unknown> }

/** What a chat provider is asked: the whole prompt (built by the service), its tools, the user's keyed hash. */
export interface ChatCall {
  messages: Array<{ role: 'system' | 'user' | 'assistant', content: string }>
  tools: ChatTool[]
  /** The vendor's model name; the provider's own `model` when absent. */
  model?: string
  /** Keyed hash of the user id: the only identity a provider sees (vendors without a documented field get none). */
  user: string
  maxOutputTokens: number
  /** Structured output: the reply is JSON of this schema (OpenAI's `response_format` json_schema, strict). */
  responseFormat?: { name: string, schema: Record<string, unknown> }
  /** Aborts the call (the client went away, or the server is closing). */
  signal: AbortSignal
}

export interface ChatUsage { inputTokens: number, outputTokens: number }

/** A provider's finish reason, in the contract's words. */
export type FinishReason = 'stop' | 'length' | 'content_filter'

/** The events of a call, in order: text deltas, then complete tool-call arguments, then one `end`. */
export type ChatEvent =
  | { type: 'delta', text: string }
  | { type: 'tool', name: string, arguments: string }
  | { type: 'end', finishReason: FinishReason, usage: ChatUsage | null }

/** A whole reply: its text, the arguments of each tool call (in order), why it ended, the vendor's counts. */
export interface ChatCompletion { text: string, toolArguments: string[], finishReason: FinishReason, usage: ChatUsage | null }

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

export function estimatePromptTokens (call: Pick<ChatCall, 'messages' | 'tools'>): number {
  return call.messages.reduce((sum, m) => sum + MESSAGE_OVERHEAD_TOKENS + estimateTokens(m.content), 0) +
    call.tools.reduce((sum, tool) => sum + estimateTokens(JSON.stringify(tool)), 0)
}

export function toFinishReason (reason: string | null | undefined): FinishReason {
  return reason === 'length' || reason === 'content_filter' ? reason : 'stop'
}
