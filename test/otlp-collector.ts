import { once } from 'node:events'
import { createServer } from 'node:http'
import type { Test } from 'tap'

/** An OTLP/HTTP receiver on loopback that keeps the bodies of what it is sent to /v1/traces; closed with the test. */
export async function otlpCollector (t: Test): Promise<{ endpoint: string, bodies: string[] }> {
  const bodies: string[] = []
  const collector = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (chunk: string) => { body += chunk }).on('end', () => {
      if (req.url === '/v1/traces') bodies.push(body)
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  }).listen(0, '127.0.0.1')
  await once(collector, 'listening')
  t.teardown(() => collector.close())
  return { endpoint: `http://127.0.0.1:${(collector.address() as { port: number }).port}`, bodies }
}
