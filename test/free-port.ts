import { once } from 'node:events'
import { createServer } from 'node:net'

/** A port free on loopback now (a listener on port 0, closed again): for a process that must be told its port. */
export async function freePort (): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  return port
}
