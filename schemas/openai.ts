import Type, { type Static } from 'typebox'
import { errorStatuses, type ErrorCodeName } from './errors.js'

// The OpenAI wire format of Chat Completions and Models (field names as OpenAI documents them), for the
// OpenAI-compatible surface under /v1/openai. Only what the service supports is here: everything else of
// OpenAI's request is refused by name (see UNSUPPORTED_FIELDS), never ignored.

export const MAX_OPENAI_MESSAGES = 256
/** All message texts, tool-call arguments and tool definitions of one request, in characters. */
export const MAX_OPENAI_TOTAL_CHARS = 400_000
export const MAX_OPENAI_TOOLS = 64
export const MAX_TOOL_SCHEMA_CHARS = 16_000
export const OPENAI_BODY_LIMIT = 1024 * 1024

const ContentPart = Type.Object({
  type: Type.String({ description: 'Only `text` parts are accepted: images, audio and files are refused (400).' }),
  text: Type.Optional(Type.String())
}, { additionalProperties: true })

const Content = Type.Union([
  Type.String(),
  Type.Array(ContentPart, { maxItems: 100, description: 'Text parts; joined without separators.' }),
  Type.Null()
])

const ToolName = Type.String({ pattern: '^[a-zA-Z0-9_-]{1,64}$' })

const ToolCall = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 128 }),
  type: Type.Literal('function'),
  function: Type.Object({
    name: ToolName,
    arguments: Type.String({ description: 'JSON text of an object.' })
  }, { additionalProperties: false })
}, { additionalProperties: false })

export const OpenAIMessage = Type.Object({
  role: Type.Union([Type.Literal('system'), Type.Literal('developer'), Type.Literal('user'), Type.Literal('assistant'), Type.Literal('tool')]),
  content: Type.Optional(Content),
  tool_calls: Type.Optional(Type.Array(ToolCall, { minItems: 1, maxItems: MAX_OPENAI_TOOLS, description: 'An assistant turn\'s calls; each answered by a `tool` turn before the next user turn.' })),
  tool_call_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'A `tool` turn: the call it answers.' })),
  refusal: Type.Optional(Type.Null())
}, { additionalProperties: false })
export type OpenAIMessageValue = Static<typeof OpenAIMessage>

const FunctionTool = Type.Object({
  type: Type.Literal('function'),
  function: Type.Object({
    name: ToolName,
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    parameters: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'A JSON Schema of an object (`type: "object"`); none: no arguments.' })),
    strict: Type.Optional(Type.Boolean())
  }, { additionalProperties: false })
}, { additionalProperties: false })

const ToolChoiceOption = Type.Union([
  Type.Literal('none'),
  Type.Literal('auto'),
  Type.Literal('required'),
  Type.Object({ type: Type.Literal('function'), function: Type.Object({ name: ToolName }, { additionalProperties: false }) }, { additionalProperties: false })
])

const ResponseFormat = Type.Union([
  Type.Object({ type: Type.Literal('text') }, { additionalProperties: false }),
  Type.Object({
    type: Type.Literal('json_schema'),
    json_schema: Type.Object({
      name: Type.String({ pattern: '^[a-zA-Z0-9_-]{1,64}$' }),
      description: Type.Optional(Type.String({ maxLength: 1024 })),
      schema: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
      strict: Type.Optional(Type.Union([Type.Boolean(), Type.Null()]))
    }, { additionalProperties: false })
  }, { additionalProperties: false })
], { description: 'Structured output: `json_schema` on vendors of the Chat Completions format (not Anthropic models).' })

export const ChatCompletionRequest = Type.Object({
  model: Type.String({ minLength: 1, maxLength: 100, description: 'A model id of GET /v1/openai/models (the catalog); routed to its vendor and fallen back like chats.' }),
  messages: Type.Array(OpenAIMessage, { minItems: 1, maxItems: MAX_OPENAI_MESSAGES }),
  stream: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
  stream_options: Type.Optional(Type.Union([Type.Object({ include_usage: Type.Optional(Type.Boolean()) }, { additionalProperties: false }), Type.Null()])),
  max_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { description: 'The reply-length limit; at most the model\'s own.' })),
  max_completion_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { description: 'Same as max_tokens (give one of them).' })),
  temperature: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 2 }), Type.Null()], { description: '0 to 2; Anthropic models take 0 to 1.' })),
  stop: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 200 }), Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 4 }), Type.Null()])),
  tools: Type.Optional(Type.Array(FunctionTool, { maxItems: MAX_OPENAI_TOOLS })),
  tool_choice: Type.Optional(ToolChoiceOption),
  response_format: Type.Optional(ResponseFormat),
  n: Type.Optional(Type.Union([Type.Literal(1), Type.Null()], { description: 'One choice per call.' })),
  logprobs: Type.Optional(Type.Union([Type.Literal(false), Type.Null()], { description: 'Log probabilities are not offered.' })),
  modalities: Type.Optional(Type.Union([Type.Array(Type.Literal('text'), { maxItems: 1 }), Type.Null()]))
}, {
  $id: 'OpenAIChatCompletionRequest',
  title: 'OpenAIChatCompletionRequest',
  additionalProperties: false,
  description: 'OpenAI\'s Chat Completions request, as far as the service supports it. Fields of OpenAI\'s API it does not support ' +
    '(n > 1, audio, logprobs, top_p, seed, penalties, logit_bias, user, parallel_tool_calls, …) are refused with a 400 naming the field.',
  examples: [{ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello in French.' }], stream: true, stream_options: { include_usage: true } }]
})
export type ChatCompletionRequestValue = Static<typeof ChatCompletionRequest>

/** OpenAI request fields the service does not offer, and why: a 400 names them rather than dropping them. */
export const UNSUPPORTED_FIELDS: Record<string, string> = {
  n: 'only 1 is supported: one choice per call',
  logprobs: 'log probabilities are not offered',
  top_logprobs: 'log probabilities are not offered',
  audio: 'audio is not supported: text only',
  modalities: 'only ["text"] is supported',
  user: 'is set by the service: a keyed hash of the signed-in user, where the vendor takes one',
  safety_identifier: 'is set by the service: a keyed hash of the signed-in user, where the vendor takes one',
  store: 'nothing is stored at the vendor (OpenAI gets store: false)',
  metadata: 'is not supported by this service',
  top_p: 'is not supported by this service: use temperature',
  seed: 'is not supported by this service',
  presence_penalty: 'is not supported by this service',
  frequency_penalty: 'is not supported by this service',
  logit_bias: 'is not supported by this service',
  parallel_tool_calls: 'is not supported by this service',
  service_tier: 'is not supported by this service',
  reasoning_effort: 'is not supported by this service',
  verbosity: 'is not supported by this service',
  prediction: 'is not supported by this service',
  web_search_options: 'is not supported by this service',
  prompt_cache_key: 'is not supported by this service',
  functions: 'is the deprecated form of tools: send tools',
  function_call: 'is the deprecated form of tool_choice: send tool_choice'
}

const Usage = Type.Object({
  prompt_tokens: Type.Integer({ minimum: 0 }),
  completion_tokens: Type.Integer({ minimum: 0 }),
  total_tokens: Type.Integer({ minimum: 0 })
}, { additionalProperties: false })

const FinishReason = Type.Union([Type.Literal('stop'), Type.Literal('length'), Type.Literal('tool_calls'), Type.Literal('content_filter')])

export const ChatCompletion = Type.Object({
  id: Type.String({ description: 'chatcmpl- and the request id.' }),
  object: Type.Literal('chat.completion'),
  created: Type.Integer({ description: 'Unix seconds.' }),
  model: Type.String({ description: 'The catalog model that served the call (a fallback\'s when the asked one failed).' }),
  choices: Type.Array(Type.Object({
    index: Type.Integer(),
    message: Type.Object({
      role: Type.Literal('assistant'),
      content: Type.Union([Type.String(), Type.Null()]),
      refusal: Type.Null(),
      tool_calls: Type.Optional(Type.Array(ToolCall))
    }, { additionalProperties: false }),
    logprobs: Type.Null(),
    finish_reason: FinishReason
  }, { additionalProperties: false })),
  usage: Usage
}, {
  $id: 'OpenAIChatCompletion',
  title: 'OpenAIChatCompletion',
  additionalProperties: false,
  description: 'OpenAI\'s chat.completion object. Streamed (`stream: true`), the reply is chat.completion.chunk events ending with `data: [DONE]`.'
})
export type ChatCompletionValue = Static<typeof ChatCompletion>

export const ChatCompletionChunk = Type.Object({
  id: Type.String({ description: 'chatcmpl- and the request id, the same on every chunk.' }),
  object: Type.Literal('chat.completion.chunk'),
  created: Type.Integer({ description: 'Unix seconds.' }),
  model: Type.String({ description: 'The catalog model that serves the call.' }),
  choices: Type.Array(Type.Object({
    index: Type.Integer(),
    delta: Type.Object({
      role: Type.Optional(Type.Literal('assistant')),
      content: Type.Optional(Type.String()),
      tool_calls: Type.Optional(Type.Array(Type.Object({
        index: Type.Integer(),
        ...ToolCall.properties
      }, { additionalProperties: false })))
    }, { additionalProperties: false }),
    logprobs: Type.Null(),
    finish_reason: Type.Union([FinishReason, Type.Null()])
  }, { additionalProperties: false }), { description: 'Empty on the last chunk of `stream_options.include_usage`.' }),
  usage: Type.Optional(Type.Union([Usage, Type.Null()], { description: 'With `stream_options.include_usage`: null on every chunk but the last.' }))
}, {
  $id: 'OpenAIChatCompletionChunk',
  title: 'OpenAIChatCompletionChunk',
  additionalProperties: false,
  description: 'OpenAI\'s chat.completion.chunk object: one `data:` event of a streamed completion. After the last one, `data: [DONE]`.'
})

export const OpenAIModel = Type.Object({
  id: Type.String(),
  object: Type.Literal('model'),
  created: Type.Integer({ description: 'Unix seconds: when this server loaded the model catalog.' }),
  owned_by: Type.String({ description: 'The vendor (openai, anthropic, qwen, deepseek, xai, gemini).' })
}, { $id: 'OpenAIModel', title: 'OpenAIModel', additionalProperties: false })

export const OpenAIModelList = Type.Object({
  object: Type.Literal('list'),
  data: Type.Array(Type.Unsafe<Static<typeof OpenAIModel>>(Type.Ref('OpenAIModel')))
}, { $id: 'OpenAIModelList', title: 'OpenAIModelList', additionalProperties: false, description: 'The catalog models this caller can use now (plan and configured vendors).' })

/** OpenAI's error types, by our status. */
export const OPENAI_ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'insufficient_quota',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'invalid_request_error',
  413: 'invalid_request_error',
  415: 'invalid_request_error',
  422: 'invalid_request_error',
  429: 'rate_limit_error'
}

export const OpenAIErrorResponse = Type.Object({
  error: Type.Object({
    message: Type.String({ description: 'A sentence for a developer; never contains request content.' }),
    type: Type.String({ description: 'OpenAI\'s error type for the status: invalid_request_error, authentication_error, insufficient_quota (402), permission_error, not_found_error, rate_limit_error or server_error.' }),
    param: Type.Union([Type.String(), Type.Null()], { description: 'The first failing field (e.g. messages.2.content), or null.' }),
    code: Type.Unsafe<ErrorCodeName>(Type.Ref('ErrorCode')),
    details: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'As details of the error envelope.' }))
  }, { additionalProperties: false })
}, {
  $id: 'OpenAIErrorResponse',
  title: 'OpenAIErrorResponse',
  additionalProperties: false,
  description: 'OpenAI\'s error shape, with the service\'s stable code in `code`; the request id is in the X-Request-Id header.',
  examples: [{ error: { message: 'There is no such model: GET /v1/openai/models lists them.', type: 'invalid_request_error', param: 'model', code: 'VALIDATION_ERROR' } }]
})
export type OpenAIErrorBody = Static<typeof OpenAIErrorResponse>

const openaiErrorRef = Type.Unsafe<OpenAIErrorBody>(Type.Ref('OpenAIErrorResponse'))

/** The error responses of an OpenAI-compatible route, each described by the codes it carries. */
export function openaiErrorResponses (...codes: ErrorCodeName[]) {
  const out: Record<number, typeof openaiErrorRef> = {}
  for (const [status, list] of errorStatuses(codes)) {
    out[status] = Type.Unsafe<OpenAIErrorBody>({ ...openaiErrorRef, description: `OpenAI-shaped error with code ${list.join(' or ')}.` })
  }
  return out
}

export const openaiSchemas = [ChatCompletionRequest, ChatCompletion, ChatCompletionChunk, OpenAIModel, OpenAIModelList, OpenAIErrorResponse]
