import Fastify, { type FastifyServerOptions } from 'fastify'
import pino from 'pino'
import t from 'tap'
import { fastifyOptions } from '../app.js'
import { testConfig } from './helper.js'

/** A bare app with the service's Fastify options and one route of the given schemas; it answers its compiled functions. */
async function appWith (body: object, response: object) {
  const app = Fastify(fastifyOptions(testConfig(), pino({ level: 'silent' })) as FastifyServerOptions)
  app.post('/echo', { schema: { body, response: { 200: response } } }, async (request, reply) => {
    compiled.push({ validate: request.getValidationFunction('body'), serialize: reply.getSerializationFunction('200') })
    return request.body
  })
  await app.ready()
  t.teardown(() => app.close())
  return app
}
const compiled: Array<{ validate: unknown, serialize: unknown }> = []

t.test('validators and serializers compiled once per schema content, shared by every app of the process; other schemas get their own', async (t) => {
  const schema = () => ({ type: 'object', properties: { a: { type: 'string', default: 'x' }, n: { type: 'integer' } }, additionalProperties: false })
  const first = await appWith(schema(), schema())
  const second = await appWith(schema(), schema())
  const other = await appWith(schema(), { type: 'object', properties: { n: { type: 'integer' } } })
  const answers = []
  for (const app of [first, second, other]) answers.push((await app.inject({ method: 'POST', url: '/echo', payload: { n: 7 } })).json())
  t.same(answers, [{ a: 'x', n: 7 }, { a: 'x', n: 7 }, { n: 7 }], 'each app answers through its own schema')
  const [one, two, three] = compiled as [typeof compiled[0], typeof compiled[0], typeof compiled[0]]
  t.equal(one.validate, two.validate, 'the second app reused the validator')
  t.equal(one.serialize, two.serialize, 'and the serializer')
  t.equal(one.validate, three.validate, 'the same body schema, the same validator')
  t.not(one.serialize, three.serialize, 'another response schema, another serializer')
  t.equal((await second.inject({ method: 'POST', url: '/echo', payload: { n: 'seven' } })).statusCode, 400, 'the reused validator still refuses')
})
