import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
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

/**
 * A TCP proxy on loopback to a local server (PostgreSQL, Redis): `stop` resets every connection and refuses new ones,
 * `start` serves again on the same port. Outage tests cut a dependency with it, never the shared server itself.
 */
export function tcpProxy (targetPort: number) {
  let server: Server | undefined
  let port = 0
  const sockets = new Set<Socket>()
  return {
    get port () { return port },
    async start () {
      server = createServer((client) => {
        const upstream = connect(targetPort, '127.0.0.1')
        const drop = () => {
          client.destroy()
          upstream.destroy()
          sockets.delete(client)
          sockets.delete(upstream)
        }
        for (const socket of [client, upstream]) {
          sockets.add(socket)
          socket.on('error', drop).on('close', drop)
        }
        client.pipe(upstream).pipe(client)
      })
      server.listen(port, '127.0.0.1')
      await once(server, 'listening')
      port = (server.address() as { port: number }).port
    },
    async stop () {
      for (const socket of sockets) socket.destroy()
      sockets.clear()
      await new Promise((resolve) => server?.close(resolve))
    }
  }
}
