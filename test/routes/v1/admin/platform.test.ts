import t from 'tap'
import { runCli, type CliIo } from '../../../../cli.js'
import { createContentCrypto, parseKeyRing, type KeyRing } from '../../../../plugins/content-crypto.js'
import { adminHeaders, build, createTestStore, TEST_SECRETS } from '../../../helper.js'

async function cli (args: string[]) {
  let stdout = ''
  let stderr = ''
  const io: CliIo = { env: { ADMIN_TOKEN: TEST_SECRETS.ADMIN_TOKEN }, stdout: (s) => { stdout += s }, stderr: (s) => { stderr += s }, fetch }
  return { code: await runCli(args, io), stdout, stderr }
}

t.test('jobs: listed and a failed one retried, by the admin API and the CLI', async (t) => {
  const { app } = await build(t, {
    register: async (app) => {
      let attempts = 0
      app.jobs.define({ name: 'test.admin', handler: async () => { attempts++; if (attempts === 1) throw Object.assign(new Error('x'), { code: 'PROVIDER_TIMEOUT' }) } })
    }
  })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const id = await app.jobs.send('test.admin', {})
  for (let i = 0; i < 200 && (await app.jobs.list({ id, state: 'failed', limit: 1 })).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 100))

  const listed = await app.inject({ url: '/v1/admin/jobs?queue=test.admin&state=failed', headers: adminHeaders })
  t.match(listed.json(), { data: [{ id, queue: 'test.admin', state: 'failed', errorCode: 'PROVIDER_TIMEOUT' }] })
  const human = await cli(['jobs', 'list', '--queue', 'test.admin', '--state', 'failed', '--limit', '5', '--url', url])
  t.match(human.stdout, new RegExp(`^id {2}queue.*\\n${id} {2}test\\.admin {2}failed {2}0/0 .* PROVIDER_TIMEOUT\\n$`))
  t.equal((await cli(['jobs', 'list', '--queue', 'test.none', '--url', url])).stdout, 'No jobs.\n')

  const retried = await cli(['jobs', 'retry', id, '--url', url])
  t.equal(retried.stdout, `Job ${id} (test.admin) is queued again.\n`)
  const again = await app.inject({ method: 'POST', url: `/v1/admin/jobs/${id}/retry`, headers: adminHeaders })
  t.equal(again.json().error.code, 'CONFLICT', 'only a failed job')
  t.equal((await app.inject({ method: 'POST', url: '/v1/admin/jobs/00000000-0000-4000-8000-000000000000/retry', headers: adminHeaders })).statusCode, 404)
  t.equal((await app.inject({ url: '/v1/admin/jobs?state=lost', headers: adminHeaders })).statusCode, 400)
  t.match((await app.audit.list({ action: 'job.retried', limit: 1 })).events, [{ target: `job:${id}`, details: { queue: 'test.admin' } }])
  for (let i = 0; i < 200 && (await app.jobs.list({ id, state: 'completed', limit: 1 })).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 100))
  t.match(JSON.parse((await cli(['jobs', 'list', '--queue', 'test.admin', '--json', '--url', url])).stdout), { data: [{ id, state: 'completed', errorCode: null }] })
  t.match((await cli(['jobs', 'list', '--queue', 'test.admin', '--url', url])).stdout, new RegExp(`${id} {2}test\\.admin {2}completed {2}1/1 .* -\n$`), 'no error code once it succeeded')
})

t.test('content rekey: the CLI re-encrypts stored secrets under the first key of the ring', async (t) => {
  const { store, drop } = await createTestStore()
  t.teardown(drop)
  const oldKeys = TEST_SECRETS.CONTENT_KEYS
  const first = await build(t, { store })
  const hook = await first.app.webhooks.create('u-rekey', { url: 'https://8.8.8.8/h', events: ['ping'] })
  const chat = await first.app.chats.create('u-rekey', 'test', { title: 'Rekeyed title' })
  await first.app.close()

  const newKey = `test2:${Buffer.alloc(32, 9).toString('base64')}`
  const { app } = await build(t, { store, env: { CONTENT_KEYS: `${newKey},${oldKeys}` } })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const human = await cli(['content', 'rekey', '--url', url])
  t.equal(human.stdout, 'Re-encrypted 2 rows under key test2 (webhook_endpoints 1, chat_sessions 1).\n')
  t.same(JSON.parse((await cli(['content', 'rekey', '--json', '--url', url])).stdout), { keyId: 'test2', rekeyed: { webhook_endpoints: 0, chat_sessions: 0, chat_messages: 0, chat_feedback: 0, stagings: 0, risk_scans: 0, tasks: 0, integrations: 0, oauth_states: 0 } })
  t.equal((await cli(['content', 'rekey', '--url', url])).stdout, 'Re-encrypted 0 rows under key test2.\n')
  const { rows } = await store.query<{ key_id: string, secret_sealed: Uint8Array }>('SELECT key_id, secret_sealed FROM webhook_endpoints WHERE id = $1', [hook.id])
  const onlyNew = createContentCrypto(parseKeyRing(newKey) as KeyRing)
  t.equal(onlyNew.openText({ keyId: rows[0]?.key_id as string, data: Buffer.from(rows[0]?.secret_sealed as Uint8Array) },
    { table: 'webhook_endpoints', column: 'secret_sealed', rowId: hook.id, userId: 'u-rekey' }), hook.secret, 'readable with the new key alone')
  t.match(await app.chats.get('u-rekey', 'test', chat.id), { title: 'Rekeyed title' }, 'a chat title too')
  t.match((await app.audit.list({ action: 'content.rekeyed', limit: 3 })).events[0], { actor: 'admin', details: { keyId: 'test2' } })
})
