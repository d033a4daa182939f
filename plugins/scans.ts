import type { FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
import { createAiServiceScanner, createLlmScanner, createSandboxScanner, llmScanTokens, type Risk, type RiskScanner, type ScanInput, type ScanOutput } from '../providers/risk-scan.js'
import { firstThatServes, type AttemptObserver } from '../providers/fallback.js'
import type { PlansFileValue } from '../schemas/plans.js'
import type { Mode } from '../schemas/principal.js'
import { cursorPosition, pageOf } from '../schemas/pagination.js'
import type { ScanValue } from '../schemas/scans.js'
import { newId } from './chats.js'
import type { ContentCrypto } from './content-crypto.js'
import { AppError } from './errors.js'
import { costMicroUsd, type Settlement } from './metering.js'
import type { Queryable, Store } from './store/index.js'

const TABLE = 'risk_scans'

interface ScanRow {
  id: string
  user_id: string
  mode: Mode
  key_id: string
  data_sealed: Uint8Array
  filename_sealed: Uint8Array | null
  source: 'llm' | 'model'
  provider: string
  risks: number
  request_id: string | null
  created_at: Date
}

const notFound = () => new AppError('NOT_FOUND', 'There is no such scan.')

export interface NewScan { userId: string, mode: Mode, filename: string | null, output: ScanOutput, provider: string, requestId: string }

export function createScans (opts: { db: Store, crypto: ContentCrypto, live: RiskScanner[], sandbox: RiskScanner, prices: PlansFileValue['prices'], scanModel: string }) {
  const { db, crypto, prices } = opts
  const bind = (row: { id: string, user_id: string }, column: 'data_sealed' | 'filename_sealed') => ({ table: TABLE, column, rowId: row.id, userId: row.user_id })
  const toScan = (row: ScanRow): ScanValue => ({
    id: row.id,
    filename: row.filename_sealed === null ? null : crypto.openText({ keyId: row.key_id, data: Buffer.from(row.filename_sealed) }, bind(row, 'filename_sealed')),
    data: crypto.openJson<Risk[]>({ keyId: row.key_id, data: Buffer.from(row.data_sealed) }, bind(row, 'data_sealed')),
    source: row.source,
    createdAt: row.created_at.toISOString()
  })

  async function row (userId: string, mode: Mode, id: string): Promise<ScanRow> {
    const found = (await db.query<ScanRow>(`SELECT * FROM ${TABLE} WHERE id = $1 AND user_id = $2 AND mode = $3`, [id, userId, mode])).rows[0]
    if (found === undefined) throw notFound()
    return found
  }

  /** What a scan of `text` by `scanner` may cost at most (list prices). */
  function estimate (scanner: RiskScanner, text: string): number {
    if (scanner.name === 'openai') {
      const tokens = llmScanTokens(text)
      return costMicroUsd(prices, { provider: 'openai', model: opts.scanModel, unitsIn: tokens.input, unitsOut: tokens.output })
    }
    return costMicroUsd(prices, { provider: scanner.name, unitsIn: 1, unitsOut: 1 })
  }

  return {
    /** The scanners a principal's mode may use, in order; empty when live scans are not set up. */
    scanners: (mode: Mode) => mode === 'test' ? [opts.sandbox] : opts.live,

    /** The dearest scanner of the chain is held (a scan may end on a fallback). */
    estimate: (scanners: RiskScanner[], text: string) => Math.max(0, ...scanners.map((s) => estimate(s, text))),

    /** The ledger's figures of a finished scan: one scan, and the tokens of a language model where one read it. */
    settlement: (scanner: RiskScanner, output: ScanOutput): Omit<Settlement, 'requestId'> => scanner.name === 'openai'
      ? { provider: 'openai', model: output.model, units: 1, unitsIn: output.usage.inputTokens, unitsOut: output.usage.outputTokens }
      : { provider: scanner.name, units: 1, unitsIn: 1, unitsOut: 1 },

    /** The first scanner of the list that serves (see firstThatServes). */
    async run (scanners: RiskScanner[], input: ScanInput, log: FastifyBaseLogger, observe: AttemptObserver): Promise<{ result: ScanOutput, used: RiskScanner }> {
      return firstThatServes(scanners, async (scanner) => scanner.scan(input), { signal: input.signal, log, what: 'risk-scan', observe })
    },

    /** Stores a finished scan (its list and file name sealed) in the caller's transaction. */
    async insert (tx: Queryable, scan: NewScan): Promise<ScanValue> {
      const id = newId('scn')
      const owner = { id, user_id: scan.userId }
      const data = crypto.sealJson(scan.output.data, bind(owner, 'data_sealed'))
      const filename = scan.filename === null ? null : crypto.seal(scan.filename, bind(owner, 'filename_sealed'), data.keyId)
      const { rows } = await tx.query<ScanRow>(`INSERT INTO ${TABLE} (id, user_id, mode, key_id, data_sealed, filename_sealed, source, provider, risks, request_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *`,
      [id, scan.userId, scan.mode, data.keyId, data.data, filename?.data ?? null, scan.output.source, scan.provider, scan.output.data.length, scan.requestId])
      return toScan(rows[0] as ScanRow)
    },

    async get (userId: string, mode: Mode, id: string) { return toScan(await row(userId, mode, id)) },

    async list (userId: string, mode: Mode, query: { cursor?: string, limit: number }) {
      const params: unknown[] = [userId, mode, query.limit + 1]
      let where = 'user_id = $1 AND mode = $2'
      if (query.cursor !== undefined) {
        const at = cursorPosition(query.cursor)
        params.push(at.createdAt, at.id)
        where += ' AND (created_at, id) < ($4, $5)'
      }
      const { rows } = await db.query<ScanRow>(`SELECT * FROM ${TABLE} WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT $3`, params)
      return pageOf(rows, query.limit, toScan)
    },

    async remove (userId: string, mode: Mode, id: string) {
      const { rowCount } = await db.query(`DELETE FROM ${TABLE} WHERE id = $1 AND user_id = $2 AND mode = $3`, [id, userId, mode])
      if (rowCount === 0) throw notFound()
    },

    async exportFor (userId: string) {
      const { rows } = await db.query<ScanRow>(`SELECT * FROM ${TABLE} WHERE user_id = $1 ORDER BY created_at, id`, [userId])
      return rows.map((r) => ({ ...toScan(r), mode: r.mode }))
    },

    async deleteFor (userId: string) {
      return (await db.query(`DELETE FROM ${TABLE} WHERE user_id = $1`, [userId])).rowCount
    }
  }
}

export type Scans = ReturnType<typeof createScans>

declare module 'fastify' {
  interface FastifyInstance {
    scans: Scans
  }
}

/** Document risk scans (SPEC §13): the scanners of SCAN_PROVIDERS and the user's scan history. */
export default fp(async function scans (app) {
  const { SCAN_PROVIDERS, AI_SERVICE_URL, AI_SERVICE_TIMEOUT_MS, SCAN_MODEL } = app.config
  const live: RiskScanner[] = []
  for (const name of SCAN_PROVIDERS.split(',')) {
    if (name === 'aiservice' && AI_SERVICE_URL !== undefined) live.push(createAiServiceScanner({ url: AI_SERVICE_URL, timeoutMs: AI_SERVICE_TIMEOUT_MS, log: app.log }))
    else if (name === 'llm' && app.openaiChat !== null) live.push(createLlmScanner({ chat: app.openaiChat, model: SCAN_MODEL }))
  }
  const scans = createScans({ db: app.store, crypto: app.contentCrypto, live, sandbox: createSandboxScanner(), prices: app.entitlements.plans.prices, scanModel: SCAN_MODEL })
  app.decorate('scans', scans)
  app.contentCrypto.registerTable({ table: TABLE, idColumn: 'id', userColumn: 'user_id', keyIdColumn: 'key_id', columns: ['data_sealed', 'filename_sealed'] })
  app.userData.register({ name: 'scans', export: async (userId) => scans.exportFor(userId), delete: async (userId) => scans.deleteFor(userId) })
}, { name: 'scans', fastify: '5.x', dependencies: ['config', 'store', 'content-crypto', 'user-data', 'entitlements', 'openai-chat'] })
