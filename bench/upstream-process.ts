import { createFakeUpstream } from '../test/fake-upstream.js'

// The fake upstream as a process of its own, so that it does not share an event loop with the load generator.
const server = createFakeUpstream().listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as { port: number }).port}\n`)
})
server.keepAliveTimeout = 120_000
