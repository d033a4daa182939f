import { getEventListeners } from 'node:events'
import t from 'tap'
import { attemptControl } from '../../providers/attempt.js'

t.test('done(): an attempt read whole is not aborted, and lets go of the caller\'s signal and the deadline', async (t) => {
  const caller = new AbortController()
  const deadline = new AbortController()
  const control = attemptControl(caller.signal, deadline.signal, 1_000)
  control.done()
  t.equal(control.signal.aborted, false, 'nothing is aborted upstream')
  t.equal(getEventListeners(caller.signal, 'abort').length, 0)
  t.equal(getEventListeners(deadline.signal, 'abort').length, 0)
  caller.abort()
  t.equal(control.reason(), null, 'a later stop of the caller is no longer this attempt\'s')
})

t.test('end(): an attempt over early is aborted upstream, and lets go of the signals', async (t) => {
  const caller = new AbortController()
  const deadline = new AbortController()
  const control = attemptControl(caller.signal, deadline.signal, 1_000)
  control.end()
  t.equal(control.signal.aborted, true)
  t.equal(getEventListeners(caller.signal, 'abort').length, 0)
  t.equal(getEventListeners(deadline.signal, 'abort').length, 0)
  t.equal(control.reason(), null, 'ended by us, not stopped')
})

t.test('a stop names its reason and rejects the race', async (t) => {
  const caller = new AbortController()
  const control = attemptControl(caller.signal, new AbortController().signal, null)
  const pending = control.race(new Promise(() => {}))
  caller.abort()
  await t.rejects(pending, /attempt stopped/)
  t.equal(control.reason(), 'client')
  const idle = attemptControl(new AbortController().signal, new AbortController().signal, 5)
  await t.rejects(idle.race(new Promise(() => {})), /attempt stopped/)
  t.equal(idle.reason(), 'idle')
  idle.end()
})
