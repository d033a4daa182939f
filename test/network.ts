import { setupServer } from 'msw/node'
import type { RequestHandler } from 'msw'
import type { Test } from 'tap'

/**
 * Providers are intercepted at the HTTP boundary with msw; any request without a handler fails the
 * test, so no test can reach a real provider. Returns the server and the requests it saw.
 */
export function interceptNetwork (t: Test, ...handlers: RequestHandler[]) {
  const server = setupServer(...handlers)
  const seen: Request[] = []
  server.events.on('request:start', ({ request }) => { seen.push(request.clone()) })
  server.listen({ onUnhandledRequest: 'error' })
  t.teardown(() => server.close())
  return { server, seen }
}
