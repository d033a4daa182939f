import t from 'tap'
import { columnsOf, DEADLOCK_RETRIES, groupCommit, isDeadlock } from '../../plugins/store/group-commit.js'

/** A run whose statements the test finishes by hand. */
function manual () {
  const runs: Array<{ items: number[], finish: (err?: Error) => void }> = []
  const run = async (items: number[]) => new Promise<string[]>((resolve, reject) => {
    runs.push({ items, finish: (err) => { if (err === undefined) resolve(items.map((n) => `done ${n}`)); else reject(err) } })
  })
  return { runs, run }
}
const tick = async () => new Promise((resolve) => setImmediate(resolve))

t.test('a lone item goes at once; items that come while it is in flight go together next, at most maxBatch', async (t) => {
  const { runs, run } = manual()
  const send = groupCommit(run, { maxBatch: 3 })
  const first = send(1)
  await tick()
  t.same(runs.map((r) => r.items), [[1]], 'sent without waiting for company')
  const later = [2, 3, 4, 5].map(send)
  await tick()
  t.equal(runs.length, 1, 'nothing more while a statement is in flight')
  runs[0]?.finish()
  t.equal(await first, 'done 1', 'the first answer comes once its statement is done')
  await tick()
  t.same(runs.map((r) => r.items), [[1], [2, 3, 4]], 'the waiting items together, at most maxBatch')
  runs[1]?.finish()
  await tick()
  t.same(runs[2]?.items, [5], 'the rest in the next')
  runs[2]?.finish()
  t.same(await Promise.all(later), ['done 2', 'done 3', 'done 4', 'done 5'], 'each caller its own result, in order')
  const again = send(6)
  await tick()
  t.same(runs[3]?.items, [6], 'idle again: the next item goes at once')
  runs[3]?.finish()
  t.equal(await again, 'done 6')
})

t.test('a failed statement fails every item of it, and only those', async (t) => {
  const { runs, run } = manual()
  const send = groupCommit(run, { maxBatch: 10 })
  const first = send(1)
  const rest = [send(2), send(3)]
  await tick()
  runs[0]?.finish(new Error('connection lost'))
  await t.rejects(first, { message: 'connection lost' })
  await tick()
  runs[1]?.finish()
  t.same(await Promise.all(rest), ['done 2', 'done 3'], 'the next group is not touched by the failure of the one before')
})

t.test('a deadlock is run again, up to DEADLOCK_RETRIES times; other errors are not', async (t) => {
  const deadlock = Object.assign(new Error('deadlock detected'), { code: '40P01' })
  let calls = 0
  const flaky = groupCommit(async (items: number[]) => {
    calls++
    if (calls <= 2) throw deadlock
    return items
  }, { maxBatch: 10 })
  t.equal(await flaky(7), 7, 'run again after two deadlocks')
  t.equal(calls, 3)

  calls = 0
  const stuck = groupCommit(async () => { calls++; throw deadlock }, { maxBatch: 10 })
  await t.rejects(stuck(1), { code: '40P01' })
  t.equal(calls, DEADLOCK_RETRIES + 1, 'given up after the retries')

  calls = 0
  const other = groupCommit(async () => { calls++; throw Object.assign(new Error('unique violation'), { code: '23505' }) }, { maxBatch: 10, retries: 5 })
  await t.rejects(other(1), { code: '23505' })
  t.equal(calls, 1, 'any other error is the callers\' at once')

  t.equal(isDeadlock(null), false)
  t.equal(isDeadlock(new Error('x')), false)
})

t.test('columnsOf turns the calls\' parameters into one array per parameter, dates as ISO text', async (t) => {
  const at = new Date('2026-12-01T00:00:00.000Z')
  t.same(columnsOf([['a', 1, at, null], ['b', 2, at, 'x']]), [['a', 'b'], [1, 2], [at.toISOString(), at.toISOString()], [null, 'x']])
})
