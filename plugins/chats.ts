import { randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import type { ChatCall } from '../providers/chat.js'
import { tokenCounter } from '../providers/tokens.js'
import { TOOL_ROUND_TOKENS } from './assistant-tools.js'
import { VENDORS } from '../providers/vendors.js'
import type { ChatMessageValue, ChatToolName, ChatValue } from '../schemas/chats.js'
import { cursorPosition, encodeCursor } from '../schemas/pagination.js'
import type { Mode } from '../schemas/principal.js'
import type { ContentCrypto } from './content-crypto.js'
import { AppError } from './errors.js'
import type { ModelEntry } from './models.js'
import type { Store } from './store/index.js'
import { toCents } from './money.js'

/** Longest reply of a chat message, in tokens (or the model's own limit when lower); also what a call reserves. */
export const CHAT_MAX_OUTPUT_TOKENS = 4096

/** The reply limit of a chat call on `model`: the service's, or the model's own when lower. */
export const replyLimit = (model: Pick<ModelEntry, 'maxOutputTokens'>) => Math.min(model.maxOutputTokens, CHAT_MAX_OUTPUT_TOKENS)
/** Earlier messages read for a prompt at most; the context limit then cuts them further by exact token counts. */
export const MAX_HISTORY_MESSAGES = 200
/** Framing tokens per message of the chat format. */
const MESSAGE_OVERHEAD_TOKENS = 4
export const CHAT_RETENTION_QUEUE = 'chats.retention'
const RETENTION_CRON = '17 3 * * *'

export const CHAT_SYSTEM_PROMPT = [
  'You are a helpful assistant inside the user\'s app. Answer clearly and concisely, in the language of the user.',
  'Never ask for passwords, keys or other secrets. If you do not know something, say so.'
].join('\n')

const SESSIONS = 'chat_sessions'
const MESSAGES = 'chat_messages'
const FEEDBACK = 'chat_feedback'

interface SessionRow {
  id: string,
  user_id: string,
  mode: Mode,
  key_id: string,
  title_sealed: Uint8Array | null,
  context_ref_sealed: Uint8Array | null,
  model: string | null,
  archived: boolean,
  tools: ChatToolName[],
  message_count: number,
  created_at: Date,
  last_activity_at: Date
}
interface MessageRow {
  id: string,
  seq: string,
  session_id: string,
  user_id: string,
  role: 'user' | 'assistant',
  key_id: string,
  content_sealed: Uint8Array,
  model: string | null,
  vendor: string | null,
  input_tokens: number | null,
  output_tokens: number | null,
  cost_micro_usd: string | null,
  finish_reason: ChatMessageValue['finishReason'],
  ttft_ms: number | null,
  latency_ms: number | null,
  estimated: boolean,
  flagged: boolean,
  created_at: Date
}

/** A public id: a prefix and 16 letters and digits. */
export const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url').replace(/[-_]/g, '').slice(0, 16).padEnd(16, '0')}`
const notFound = () => new AppError('NOT_FOUND', 'There is no such chat.')

/** What a call cost at the model's list prices, in whole micro-USD, rounded up (integer arithmetic). */
export function costMicroUsd (model: Pick<ModelEntry, 'inputMicroUsdPer1M' | 'outputMicroUsdPer1M'>, inputTokens: number, outputTokens: number): number {
  const total = BigInt(inputTokens) * BigInt(model.inputMicroUsdPer1M) + BigInt(outputTokens) * BigInt(model.outputMicroUsdPer1M)
  return Number((total + 999_999n) / 1_000_000n)
}

/**
 * What a chat call reserves before a vendor is called: for each model it may end on (the routed one and its fallbacks),
 * its prompt and reply limit; the most tokens and the dearest cost of them. POST /v1/ai/estimate answers the same.
 */
export function chatReservation (entries: Array<{ model: ModelEntry, promptTokens: number, outputTokens?: number }>, toolRounds = 0) {
  const asks = entries.map(({ model, promptTokens, outputTokens }) => {
    const out = outputTokens ?? replyLimit(model)
    // With assistant tools a reply may take toolRounds more calls, each prompt longer by a round's tool calls and results.
    let tokens = 0
    let cost = 0
    for (let round = 0; round <= toolRounds; round++) {
      const prompt = promptTokens + round * TOOL_ROUND_TOKENS
      tokens += prompt + out
      cost += costMicroUsd(model, prompt, out)
    }
    return { tokens, costMicroUsd: cost }
  })
  return { tokens: Math.max(...asks.map((a) => a.tokens)), costMicroUsd: Math.max(...asks.map((a) => a.costMicroUsd)) }
}

/** The figures of an assistant message, as its call ended. */
export interface Exchange {
  userContent: string
  reply: string
  model: ModelEntry
  finishReason: NonNullable<ChatMessageValue['finishReason']>
  inputTokens: number
  outputTokens: number
  /** What the user was charged for the call (the list price, with the plan's markup when it is billed in credits). */
  costMicroUsd: number
  estimated: boolean
  ttftMs: number
  latencyMs: number
  /** The reply was blocked by moderation: `reply` is then the notice that replaces it. */
  flagged: boolean
}

export interface ChatsOptions { db: Store, crypto: ContentCrypto, now?: () => Date }

/** Chat sessions, their messages and feedback (SPEC §15); everything the user wrote is sealed at rest. */
export function createChats (opts: ChatsOptions) {
  const { db, crypto } = opts
  const now = opts.now ?? (() => new Date())
  const bind = (table: string, column: string, row: { id: string, user_id: string }) => ({ table, column, rowId: row.id, userId: row.user_id })
  const openOrNull = (row: { id: string, user_id: string, key_id: string }, table: string, column: string, data: Uint8Array | null) =>
    data === null ? null : crypto.openText({ keyId: row.key_id, data: Buffer.from(data) }, bind(table, column, row))

  const toChat = (row: SessionRow): ChatValue => ({
    id: row.id,
    title: openOrNull(row, SESSIONS, 'title_sealed', row.title_sealed),
    model: row.model,
    contextRef: openOrNull(row, SESSIONS, 'context_ref_sealed', row.context_ref_sealed),
    archived: row.archived,
    tools: row.tools,
    messageCount: row.message_count,
    createdAt: row.created_at.toISOString(),
    lastActivityAt: row.last_activity_at.toISOString()
  })

  const toMessage = (row: MessageRow): ChatMessageValue => {
    const cost = row.cost_micro_usd === null ? null : Number(row.cost_micro_usd)
    return {
      id: row.id,
      role: row.role,
      content: crypto.openText({ keyId: row.key_id, data: Buffer.from(row.content_sealed) }, bind(MESSAGES, 'content_sealed', row)),
      model: row.model,
      finishReason: row.finish_reason,
      usage: row.input_tokens === null || row.output_tokens === null || cost === null
        ? null
        : { inputTokens: row.input_tokens, outputTokens: row.output_tokens, totalTokens: row.input_tokens + row.output_tokens, costMicroUsd: cost, costCents: toCents(cost) },
      createdAt: row.created_at.toISOString(),
      ttftMs: row.ttft_ms,
      latencyMs: row.latency_ms,
      flagged: row.flagged
    }
  }

  async function sessionRow (userId: string, mode: Mode, id: string): Promise<SessionRow> {
    const { rows } = await db.query<SessionRow>(`SELECT * FROM ${SESSIONS} WHERE id = $1 AND user_id = $2 AND mode = $3`, [id, userId, mode])
    if (rows[0] === undefined) throw notFound()
    return rows[0]
  }

  const sealColumn = (table: string, column: string, row: { id: string, user_id: string }, value: string | null | undefined) =>
    value == null ? null : crypto.seal(value, bind(table, column, row)).data

  return {
    async create (userId: string, mode: Mode, input: { title?: string, model?: string, contextRef?: string, tools?: ChatToolName[] }): Promise<ChatValue> {
      const row = { id: newId('chat'), user_id: userId }
      const at = now()
      const { rows } = await db.query<SessionRow>(`INSERT INTO ${SESSIONS} (id, user_id, mode, key_id, title_sealed, context_ref_sealed, model, tools, created_at, last_activity_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING *`, [row.id, userId, mode, crypto.primaryKeyId,
        sealColumn(SESSIONS, 'title_sealed', row, input.title), sealColumn(SESSIONS, 'context_ref_sealed', row, input.contextRef), input.model ?? null, input.tools ?? [], at])
      return toChat(rows[0] as SessionRow)
    },

    async get (userId: string, mode: Mode, id: string) { return toChat(await sessionRow(userId, mode, id)) },

    async list (userId: string, mode: Mode, query: { cursor?: string, limit: number, archived?: boolean }) {
      const params: unknown[] = [userId, mode, query.limit + 1]
      let where = 'user_id = $1 AND mode = $2'
      if (query.archived !== undefined) { params.push(query.archived); where += ` AND archived = $${params.length}` }
      if (query.cursor !== undefined) {
        const at = cursorPosition(query.cursor)
        params.push(at.createdAt, at.id)
        where += ` AND (last_activity_at, id) < ($${params.length - 1}, $${params.length})`
      }
      const { rows } = await db.query<SessionRow>(`SELECT * FROM ${SESSIONS} WHERE ${where} ORDER BY last_activity_at DESC, id DESC LIMIT $3`, params)
      const page = rows.slice(0, query.limit)
      const last = page.at(-1)
      return { data: page.map(toChat), nextCursor: rows.length > query.limit && last !== undefined ? encodeCursor({ createdAt: last.last_activity_at, id: last.id }) : null }
    },

    async update (userId: string, mode: Mode, id: string, patch: { title?: string | null, archived?: boolean, model?: string | null }): Promise<ChatValue> {
      const row = await sessionRow(userId, mode, id)
      // Both sealed values are written again under the primary key (a row carries one key id).
      const title = patch.title === undefined ? openOrNull(row, SESSIONS, 'title_sealed', row.title_sealed) : patch.title
      const contextRef = openOrNull(row, SESSIONS, 'context_ref_sealed', row.context_ref_sealed)
      const { rows } = await db.query<SessionRow>(`UPDATE ${SESSIONS} SET key_id = $2, title_sealed = $3, context_ref_sealed = $4,
        archived = COALESCE($5, archived), model = CASE WHEN $6 THEN $7 ELSE model END WHERE id = $1 RETURNING *`,
      [id, crypto.primaryKeyId, sealColumn(SESSIONS, 'title_sealed', row, title), sealColumn(SESSIONS, 'context_ref_sealed', row, contextRef),
        patch.archived ?? null, patch.model !== undefined, patch.model ?? null])
      return toChat(rows[0] as SessionRow)
    },

    /** Deletes the chat, its messages and their feedback for real. */
    async remove (userId: string, mode: Mode, id: string) {
      const { rowCount } = await db.query(`DELETE FROM ${SESSIONS} WHERE id = $1 AND user_id = $2 AND mode = $3`, [id, userId, mode])
      if (rowCount === 0) throw notFound()
    },

    /** The chat's latest messages, oldest first, for a prompt. */
    async history (session: { id: string }): Promise<Array<{ role: 'user' | 'assistant', content: string }>> {
      const { rows } = await db.query<MessageRow>(`SELECT * FROM ${MESSAGES} WHERE session_id = $1 ORDER BY seq DESC LIMIT ${MAX_HISTORY_MESSAGES}`, [session.id])
      return rows.reverse().map((r) => ({ role: r.role, content: toMessage(r).content }))
    },

    /** A page of the chat's messages, newest first; the cursor is bound to the chat. */
    async messages (userId: string, mode: Mode, id: string, query: { cursor?: string, limit: number }) {
      await sessionRow(userId, mode, id)
      const params: unknown[] = [id, query.limit + 1]
      let where = 'session_id = $1'
      if (query.cursor !== undefined) {
        const match = /^(chat_[0-9A-Za-z]{16})\|([0-9]{1,18})$/.exec(Buffer.from(query.cursor, 'base64url').toString('utf8'))
        if (match?.[1] !== id) {
          throw new AppError('VALIDATION_ERROR', 'The cursor is not one of this chat\'s message list.', { fields: [{ location: 'querystring', path: '/cursor', message: 'is not a cursor of this chat' }] })
        }
        params.push(match[2])
        where += ' AND seq < $3'
      }
      const { rows } = await db.query<MessageRow>(`SELECT * FROM ${MESSAGES} WHERE ${where} ORDER BY seq DESC LIMIT $2`, params)
      const page = rows.slice(0, query.limit)
      const last = page.at(-1)
      return { data: page.map(toMessage), nextCursor: rows.length > query.limit && last !== undefined ? Buffer.from(`${id}|${last.seq}`).toString('base64url') : null }
    },

    /**
     * The prompt of a new message: the system prompt, then as much of the history as fits the model's context (newest
     * kept, counted with the vendor's tokenizer where it is public), then the message. Returns it with its token count.
     */
    async prompt (model: ModelEntry, history: Array<{ role: 'user' | 'assistant', content: string }>, content: string, maxOutputTokens: number, system = CHAT_SYSTEM_PROMPT) {
      const count = await tokenCounter(VENDORS[model.vendor].exactTokens)
      const cost = (text: string) => count(text) + MESSAGE_OVERHEAD_TOKENS
      let tokens = cost(system) + cost(content)
      const budget = model.contextTokens - maxOutputTokens
      const kept: typeof history = []
      for (let i = history.length - 1; i >= 0; i--) {
        const turn = history[i] as (typeof history)[number]
        const more = cost(turn.content)
        if (tokens + more > budget) break
        tokens += more
        kept.unshift(turn)
      }
      const messages: ChatCall['messages'] = [{ role: 'system', content: system }, ...kept, { role: 'user', content }]
      return { messages, tokens, cutTurns: history.length - kept.length }
    },

    /** Stores the user's message and the reply in one transaction and moves the chat's activity on; returns the reply. */
    async addExchange (session: { id: string, user_id: string }, exchange: Exchange): Promise<ChatMessageValue> {
      return db.transaction(async (tx) => {
        const userRow = { id: newId('msg'), user_id: session.user_id }
        const replyRow = { id: newId('msg'), user_id: session.user_id }
        const at = now()
        await tx.query(`INSERT INTO ${MESSAGES} (id, session_id, user_id, role, key_id, content_sealed, created_at) VALUES ($1, $2, $3, 'user', $4, $5, $6)`,
          [userRow.id, session.id, session.user_id, crypto.primaryKeyId, sealColumn(MESSAGES, 'content_sealed', userRow, exchange.userContent), at])
        const { rows } = await tx.query<MessageRow>(`INSERT INTO ${MESSAGES} (id, session_id, user_id, role, key_id, content_sealed, model, vendor,
          input_tokens, output_tokens, cost_micro_usd, finish_reason, ttft_ms, latency_ms, estimated, flagged, created_at)
          VALUES ($1, $2, $3, 'assistant', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING *`,
        [replyRow.id, session.id, session.user_id, crypto.primaryKeyId, sealColumn(MESSAGES, 'content_sealed', replyRow, exchange.reply),
          exchange.model.id, exchange.model.vendor, exchange.inputTokens, exchange.outputTokens,
          exchange.costMicroUsd, exchange.finishReason,
          exchange.ttftMs, exchange.latencyMs, exchange.estimated, exchange.flagged, at])
        await tx.query(`UPDATE ${SESSIONS} SET message_count = message_count + 2, last_activity_at = $2 WHERE id = $1`, [session.id, at])
        return toMessage(rows[0] as MessageRow)
      })
    },

    row: sessionRow,

    /** One rating per assistant message of the chat, replaced when given again. */
    async feedback (userId: string, mode: Mode, chatId: string, messageId: string, input: { rating: 1 | -1, comment?: string }) {
      await sessionRow(userId, mode, chatId)
      const { rows } = await db.query<MessageRow>(`SELECT * FROM ${MESSAGES} WHERE id = $1 AND session_id = $2 AND role = 'assistant'`, [messageId, chatId])
      const message = rows[0]
      if (message === undefined) throw new AppError('NOT_FOUND', 'There is no such reply in this chat.')
      const row = { id: messageId, user_id: userId }
      await db.query(`INSERT INTO ${FEEDBACK} (message_id, session_id, user_id, model, vendor, rating, key_id, comment_sealed)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (message_id) DO UPDATE SET rating = EXCLUDED.rating, key_id = EXCLUDED.key_id, comment_sealed = EXCLUDED.comment_sealed, updated_at = now()`,
      [messageId, chatId, userId, message.model, message.vendor, input.rating, input.comment === undefined ? null : crypto.primaryKeyId,
        sealColumn(FEEDBACK, 'comment_sealed', row, input.comment)])
    },

    /** Deletes chats without activity for `days` days (CHAT_RETENTION_DAYS); returns how many. */
    async purge (days: number): Promise<number> {
      const { rowCount } = await db.query(`DELETE FROM ${SESSIONS} WHERE last_activity_at < $1`, [new Date(now().getTime() - days * 86_400_000)])
      return rowCount
    },

    async exportFor (userId: string) {
      const { rows } = await db.query<SessionRow>(`SELECT * FROM ${SESSIONS} WHERE user_id = $1 ORDER BY created_at, id`, [userId])
      const out: Array<ChatValue & { mode: Mode, messages: ChatMessageValue[], feedback: Array<{ messageId: string, rating: number, comment: string | null }> }> = []
      for (const row of rows) {
        const { rows: messages } = await db.query<MessageRow>(`SELECT * FROM ${MESSAGES} WHERE session_id = $1 ORDER BY seq`, [row.id])
        const { rows: feedback } = await db.query<{ message_id: string, user_id: string, rating: number, key_id: string | null, comment_sealed: Uint8Array | null }>(
          `SELECT message_id, user_id, rating, key_id, comment_sealed FROM ${FEEDBACK} WHERE session_id = $1 ORDER BY created_at`, [row.id])
        out.push({
          ...toChat(row),
          mode: row.mode,
          messages: messages.map(toMessage),
          feedback: feedback.map((f) => ({
            messageId: f.message_id,
            rating: f.rating,
            comment: f.key_id === null ? null : openOrNull({ id: f.message_id, user_id: f.user_id, key_id: f.key_id }, FEEDBACK, 'comment_sealed', f.comment_sealed)
          }))
        })
      }
      return out
    },

    async deleteFor (userId: string): Promise<number> {
      const { rowCount } = await db.query(`DELETE FROM ${SESSIONS} WHERE user_id = $1`, [userId])
      return rowCount
    }
  }
}

export type Chats = ReturnType<typeof createChats>

declare module 'fastify' {
  interface FastifyInstance {
    chats: Chats
  }
}

/** Chat sessions: their store (sealed), retention job, and their section of a user's data export and deletion. */
export default fp(async function chats (app) {
  const chats = createChats({ db: app.store, crypto: app.contentCrypto })
  app.decorate('chats', chats)
  app.contentCrypto.registerTable({ table: SESSIONS, idColumn: 'id', userColumn: 'user_id', keyIdColumn: 'key_id', columns: ['title_sealed', 'context_ref_sealed'] })
  app.contentCrypto.registerTable({ table: MESSAGES, idColumn: 'id', userColumn: 'user_id', keyIdColumn: 'key_id', columns: ['content_sealed'] })
  app.contentCrypto.registerTable({ table: FEEDBACK, idColumn: 'message_id', userColumn: 'user_id', keyIdColumn: 'key_id', columns: ['comment_sealed'] })
  app.jobs.define({
    name: CHAT_RETENTION_QUEUE,
    cron: RETENTION_CRON,
    retryLimit: 3,
    retryDelaySeconds: 600,
    handler: async ({ log }) => {
      const deleted = await chats.purge(app.config.CHAT_RETENTION_DAYS)
      const calls = await app.aiCalls.purge(app.config.CHAT_RETENTION_DAYS)
      log.info({ deleted, calls }, 'chats and call records past retention deleted')
      return { deleted, calls }
    }
  })
  app.userData.register({ name: 'chats', export: async (userId) => chats.exportFor(userId), delete: async (userId) => chats.deleteFor(userId) })
}, { name: 'chats', fastify: '5.x', dependencies: ['config', 'store', 'content-crypto', 'jobs', 'user-data', 'ai-calls'] })
