import t from 'tap'
import Type from 'typebox'
import { sseSchema, wantsStream } from '../../routes/sse.js'

t.test('sseSchema names each event\'s component, and refuses a schema that is not one', async (t) => {
  t.same(sseSchema('Events.', { delta: Type.Object({ text: Type.String() }, { $id: 'Delta' }) }), { type: 'string', description: 'Events.', 'x-events': { delta: 'Delta' } })
  t.throws(() => sseSchema('Events.', { delta: Type.Object({}) }), /the delta event's schema has no \$id/)
})

t.test('wantsStream reads the Accept header', async (t) => {
  t.equal(wantsStream('application/json, text/event-stream;q=0.9'), true)
  t.equal(wantsStream('application/json'), false)
  t.equal(wantsStream(undefined), false)
})
