import Type, { type Static } from 'typebox'
import { Page, PageQuery } from './pagination.js'
import { isoTime, ref } from './refs.js'

/** Longest user message of a chat (SPEC §15). */
export const MAX_CHAT_MESSAGE_CHARS = 8000
export const MAX_CHAT_TITLE_CHARS = 200
export const DEFAULT_MESSAGE_PAGE = 50

export const ChatId = Type.String({ pattern: '^chat_[0-9A-Za-z]{16}$', description: 'Id of a chat session.', examples: ['chat_4Gm2Qz8LwP1vXk7R'] })
export const MessageId = Type.String({ pattern: '^msg_[0-9A-Za-z]{16}$', description: 'Id of a chat message.', examples: ['msg_9Hn3Ta6PqW2sYc5D'] })
const ModelId = Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$', description: 'A model id of GET /v1/ai/models. Absent: routed by the message\'s task class.', examples: ['gpt-4o-mini'] })
const Title = Type.String({ minLength: 1, maxLength: MAX_CHAT_TITLE_CHARS, description: 'Your title of the chat (stored encrypted).' })
const ContextRef = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: '^[\\x21-\\x7e]+$',
  description: 'An opaque reference of the app (a book id, a document id), kept with the chat (encrypted) and never sent to a model.',
  examples: ['book:9780141439518']
})

/** The assistant tools a chat may be created with (SPEC §17). */
export const CHAT_TOOLS = ['calendar', 'tasks'] as const
export type ChatToolName = typeof CHAT_TOOLS[number]
const Tools = Type.Array(Type.Union([Type.Literal('calendar'), Type.Literal('tasks')]), {
  uniqueItems: true,
  maxItems: CHAT_TOOLS.length,
  description: 'Assistant tools: `calendar` lets the model read your Google Calendar (`list_calendar_events`, run by the service; only ' +
    'event titles and times go to the model\'s vendor); `tasks` lets it propose tasks (`create_task`), returned as suggestions you confirm ' +
    'with POST /v1/tasks, never created by the model.'
})

export const CreateChatRequest = Type.Object({
  title: Type.Optional(Title),
  model: Type.Optional(ModelId),
  contextRef: Type.Optional(ContextRef),
  tools: Type.Optional(Tools)
}, { $id: 'CreateChatRequest', title: 'CreateChatRequest', additionalProperties: false, examples: [{ title: 'Reading notes', contextRef: 'book:9780141439518' }, { title: 'My week', tools: ['calendar', 'tasks'] }] })

export const UpdateChatRequest = Type.Object({
  title: Type.Optional(Type.Union([Title, Type.Null()])),
  archived: Type.Optional(Type.Boolean()),
  model: Type.Optional(Type.Union([ModelId, Type.Null()], { description: 'The chat\'s model; null: routed per message.' }))
}, { $id: 'UpdateChatRequest', title: 'UpdateChatRequest', additionalProperties: false, minProperties: 1, examples: [{ archived: true }] })

export const Chat = Type.Object({
  id: ChatId,
  title: Type.Union([Type.String(), Type.Null()]),
  model: Type.Union([Type.String(), Type.Null()], { description: 'The model every message uses unless it names one; null: routed per message.' }),
  contextRef: Type.Union([Type.String(), Type.Null()]),
  archived: Type.Boolean(),
  tools: Type.Array(Type.Union([Type.Literal('calendar'), Type.Literal('tasks')]), { description: 'Its assistant tools (empty: none).' }),
  messageCount: Type.Integer({ minimum: 0 }),
  createdAt: isoTime('When the chat was created.'),
  lastActivityAt: isoTime('When its latest message was added (or it was created).')
}, {
  $id: 'Chat',
  title: 'Chat',
  additionalProperties: false,
  examples: [{ id: 'chat_4Gm2Qz8LwP1vXk7R', title: 'Reading notes', model: null, contextRef: 'book:9780141439518', archived: false, tools: [], messageCount: 2, createdAt: '2026-12-02T09:00:00.000Z', lastActivityAt: '2026-12-02T09:01:10.000Z' }]
})
export type ChatValue = Static<typeof Chat>

export const ChatListQuery = Type.Object({
  ...PageQuery,
  archived: Type.Optional(Type.Boolean({ description: 'Only archived (`true`) or only active (`false`) chats; absent: both.' }))
}, { additionalProperties: false })
export const ChatPage = Page(ref(Chat), { $id: 'ChatPage', description: 'Chats, latest activity first.' })

export const SendMessageRequest = Type.Object({
  content: Type.String({ minLength: 1, maxLength: MAX_CHAT_MESSAGE_CHARS, description: 'The user\'s message (1 to 8,000 characters).' }),
  model: Type.Optional(ModelId)
}, { $id: 'SendMessageRequest', title: 'SendMessageRequest', additionalProperties: false, examples: [{ content: 'Summarize chapter 3 in five points.' }] })

export const ChatUsage = Type.Object({
  inputTokens: Type.Integer({ minimum: 0 }),
  outputTokens: Type.Integer({ minimum: 0 }),
  totalTokens: Type.Integer({ minimum: 0 }),
  costMicroUsd: Type.Integer({ minimum: 0, description: 'What the call cost at the model\'s list prices, in micro-USD.' }),
  costCents: Type.Integer({ minimum: 0, description: 'The same, rounded to whole cents.' })
}, { $id: 'ChatUsage', title: 'ChatUsage', additionalProperties: false })

const FinishReason = Type.Union([Type.Literal('stop'), Type.Literal('length'), Type.Literal('content_filter')], {
  description: '`length`: the reply reached its token limit; `content_filter`: the vendor stopped it.'
})

export const ModerationWarning = Type.Object({
  severity: Type.Literal('medium'),
  categories: Type.Array(Type.String(), { description: 'The moderation categories that reached the medium level (e.g. `violence`).' }),
  message: Type.String()
}, {
  $id: 'ModerationWarning',
  title: 'ModerationWarning',
  additionalProperties: false,
  description: 'With MODERATION=openai: the message or the reply reached the medium level of a category (MODERATION_THRESHOLDS). Only on the answer that was sent, not stored.',
  examples: [{ severity: 'medium', categories: ['violence'], message: 'This exchange touches a sensitive subject (violence).' }]
})

export type ModerationWarningValue = Static<typeof ModerationWarning>

export const TaskSuggestion = Type.Object({
  type: Type.Literal('create_task'),
  task: Type.Object({
    title: Type.String({ minLength: 1, maxLength: 500 }),
    dueDate: Type.Optional(Type.String({ format: 'date' }))
  }, { additionalProperties: false, description: 'The body to POST to /v1/tasks if the user confirms.' })
}, {
  $id: 'TaskSuggestion',
  title: 'TaskSuggestion',
  additionalProperties: false,
  description: 'A task the assistant proposes (chats with the `tasks` tool). Nothing is created until the app confirms it with POST /v1/tasks. Not stored with the message.',
  examples: [{ type: 'create_task', task: { title: 'Prepare slides for the design review', dueDate: '2026-12-08' } }]
})
export type TaskSuggestionValue = Static<typeof TaskSuggestion>

export const ChatMessage = Type.Object({
  id: MessageId,
  role: Type.Union([Type.Literal('user'), Type.Literal('assistant')]),
  content: Type.String(),
  model: Type.Union([Type.String(), Type.Null()], { description: 'The model that wrote it (assistant messages).' }),
  finishReason: Type.Union([FinishReason, Type.Null()]),
  usage: Type.Union([ref(ChatUsage), Type.Null()], { description: 'Tokens and cost of the call that wrote it (assistant messages).' }),
  createdAt: isoTime('When it was stored.'),
  ttftMs: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: 'Time to the first token, from the request.' }),
  latencyMs: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: 'Time to the whole reply, from the request.' }),
  flagged: Type.Boolean({ description: 'The reply was blocked by moderation (MODERATION=openai) and `content` is the notice that replaced it.' }),
  warning: Type.Optional(ref(ModerationWarning)),
  toolsUsed: Type.Optional(Type.Array(Type.String(), { description: 'The server-run tools the model called for this reply (e.g. `list_calendar_events`); only on the answer that was sent, not stored.' })),
  suggestions: Type.Optional(Type.Array(ref(TaskSuggestion), { description: 'Tasks the assistant proposes; only on the answer that was sent, not stored.' }))
}, {
  $id: 'ChatMessage',
  title: 'ChatMessage',
  additionalProperties: false,
  examples: [{
    id: 'msg_9Hn3Ta6PqW2sYc5D',
    role: 'assistant',
    content: 'Chapter 3 in five points: …',
    model: 'gpt-4o-mini',
    finishReason: 'stop',
    usage: { inputTokens: 412, outputTokens: 96, totalTokens: 508, costMicroUsd: 120, costCents: 0 },
    createdAt: '2026-12-02T09:01:10.000Z',
    ttftMs: 380,
    latencyMs: 1450,
    flagged: false
  }]
})
export type ChatMessageValue = Static<typeof ChatMessage>

export const MessageListQuery = Type.Object({
  cursor: PageQuery.cursor,
  limit: Type.Integer({ minimum: 1, maximum: 100, default: DEFAULT_MESSAGE_PAGE, description: 'Messages per page (default 50).' })
}, { additionalProperties: false })
export const MessagePage = Page(ref(ChatMessage), { $id: 'MessagePage', description: 'A chat\'s messages, newest first.' })

export const FeedbackRequest = Type.Object({
  rating: Type.Union([Type.Literal(1), Type.Literal(-1)], { description: '1: helpful; -1: not helpful.' }),
  comment: Type.Optional(Type.String({ maxLength: 1000, description: 'Why (stored encrypted; never sent to a model).' }))
}, { $id: 'FeedbackRequest', title: 'FeedbackRequest', additionalProperties: false, examples: [{ rating: 1 }] })

export const ChatStreamUsage = Type.Object({
  inputTokens: Type.Integer({ minimum: 0 }),
  outputTokens: Type.Integer({ minimum: 0 })
}, { $id: 'ChatStreamUsage', title: 'ChatStreamUsage', additionalProperties: false, description: 'A chat stream\'s `usage` event: the tokens of the whole reply, once at the end.' })

export const ChatStreamTool = Type.Object({
  name: Type.String({ description: 'The tool the service ran (e.g. `list_calendar_events`).' })
}, { $id: 'ChatStreamTool', title: 'ChatStreamTool', additionalProperties: false, description: 'A chat stream\'s `tool` event: the service ran a tool the model called; the reply goes on after it.' })

export const ChatStreamDone = Type.Object({
  messageId: MessageId,
  finishReason: FinishReason,
  usage: ref(ChatUsage),
  costCents: Type.Integer({ minimum: 0, description: 'What the reply cost, in cents.' }),
  model: Type.String({ description: 'The model that wrote the reply.' }),
  warning: Type.Optional(ref(ModerationWarning))
}, { $id: 'ChatStreamDone', title: 'ChatStreamDone', additionalProperties: false, description: 'A chat stream\'s `done` event: the reply is stored as this message.' })

export const CHAT_STREAM_DESCRIPTION = 'Server-sent events, the same framing as the Settings Assistant\'s stream: `delta` {text} as the reply ' +
  'is written; `usage` {inputTokens, outputTokens} once at the end; then `done` {messageId, finishReason, usage, costCents, model, warning?}; ' +
  'or `error` {error} (the error envelope) when the vendor fails after the first byte, or when moderation (MODERATION=openai) blocks ' +
  'the finished reply (CONTENT_REJECTED: discard the text shown). A reply that did not finish, or was blocked, is not stored. ' +
  'In a chat with tools also: `tool` {name} when the service runs a tool the model called (the reply goes on after it), and ' +
  '`suggestion` {type: "create_task", task} for each task the assistant proposes (the app asks the user, then POSTs the task).'

export const chatSchemas = [CreateChatRequest, UpdateChatRequest, Chat, ChatPage, SendMessageRequest, ChatUsage, ModerationWarning, TaskSuggestion, ChatMessage, MessagePage, FeedbackRequest, ChatStreamUsage, ChatStreamTool, ChatStreamDone]
