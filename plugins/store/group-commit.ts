/**
 * Group commit: items that arrive while a statement of their kind is in flight wait for it, then go together in the
 * next one (at most `maxBatch`). A lone item is sent at once, so a quiet server adds no wait; under load, one round
 * trip and one commit serve many calls. Each caller's promise settles only after the statement holding its item has
 * committed (or failed: then every item of it rejects with the statement's error, and nothing of it was written).
 * `run` answers one result per item, in order.
 */
export function groupCommit<I, O> (run: (items: I[]) => Promise<O[]>, options: { maxBatch: number, retries?: number }) {
  const waiting: Array<{ item: I, resolve: (value: O) => void, reject: (err: unknown) => void }> = []
  let inFlight = false
  const retries = options.retries ?? DEADLOCK_RETRIES

  async function attempt (items: I[], tries = 0): Promise<O[]> {
    try {
      return await run(items)
    } catch (err) {
      // Two batches that lock the same counter rows in another order: PostgreSQL aborts one, which is run again.
      if (!isDeadlock(err) || tries >= retries) throw err
      return attempt(items, tries + 1)
    }
  }

  async function drain () {
    inFlight = true
    while (waiting.length > 0) {
      const batch = waiting.splice(0, options.maxBatch)
      try {
        const results = await attempt(batch.map((entry) => entry.item))
        batch.forEach((entry, i) => { entry.resolve(results[i] as O) })
      } catch (err) {
        for (const entry of batch) entry.reject(err)
      }
    }
    inFlight = false
  }

  return (item: I): Promise<O> => new Promise<O>((resolve, reject) => {
    waiting.push({ item, resolve, reject })
    if (!inFlight) drain()
  })
}

/** How often a batch aborted by a deadlock is run again before its callers get the error. */
export const DEADLOCK_RETRIES = 3

/** PostgreSQL's deadlock_detected (40P01). */
export const isDeadlock = (err: unknown) => (err as { code?: unknown } | null)?.code === '40P01'

/**
 * The parameters of one statement per call, turned into one array per parameter (for `unnest`): a grouped statement
 * takes the very values its single-call statement does, in the same order. Dates go as ISO text, which both stores
 * read into `timestamptz[]`.
 */
export function columnsOf (rows: unknown[][]): unknown[][] {
  // A group has at least one call.
  return (rows[0] as unknown[]).map((_, i) => rows.map((row) => {
    const value = row[i]
    return value instanceof Date ? value.toISOString() : value
  }))
}
