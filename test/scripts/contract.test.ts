import { readFileSync } from 'node:fs'
import SwaggerParser from '@apidevtools/swagger-parser'
import t from 'tap'
import { CLIENT_TYPES_FILE, generateClientTypes } from '../../scripts/client-types.js'
import { ENV_DOC_FILE, generateEnvDoc, generateOpenApi, generatePrivacyDoc, OPENAPI_FILE, PRIVACY_DOC_FILE } from '../../scripts/contract.js'
import { swaggerOptions } from '../../plugins/external/openapi.js'
import { errorResponses } from '../../schemas/errors.js'
import { build } from '../helper.js'

interface OpenApiDoc {
  openapi: string
  paths: Record<string, Record<string, { operationId?: string, responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>>
  components: { schemas: Record<string, unknown> }
}

t.test('openapi/openapi.json is what the code generates (run `npm run openapi` after changing a route)', async (t) => {
  const committed = readFileSync(OPENAPI_FILE, 'utf8')
  const generated = await generateOpenApi()
  t.ok(committed === generated,
    'openapi/openapi.json is stale: the route schemas changed. Run `npm run openapi` and commit openapi/openapi.json.')
})

t.test('the TypeScript client\'s types are what the committed contract generates (run `npm run openapi`)', async (t) => {
  const committed = readFileSync(CLIENT_TYPES_FILE, 'utf8')
  t.ok(committed === await generateClientTypes(readFileSync(OPENAPI_FILE, 'utf8')),
    'clients/typescript/src/schema.ts is stale: run `npm run openapi` and commit it with openapi/openapi.json.')
  t.match(committed, /streamChatMessage: \{\n {4}"delta": components\['schemas'\]\["AssistantDelta"\]/, 'the streamed events are typed from x-events')
  t.match(committed, /image: Blob;/, 'an upload field is a Blob')
})

t.test('a query parameter with a default is optional in the contract; every streamed answer names its events', async (t) => {
  const doc = JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')) as OpenApiDoc & { paths: Record<string, Record<string, { parameters?: Array<{ name: string, in: string, required?: boolean, schema: { default?: unknown } }> }>> }
  const limit = doc.paths['/v1/tasks']?.get?.parameters?.find((p) => p.name === 'limit')
  t.equal(limit?.schema.default, 20)
  t.equal(limit?.required, false)
  for (const [path, operations] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      for (const parameter of operation.parameters ?? []) {
        if (parameter.in === 'query' && parameter.schema.default !== undefined) t.not(parameter.required, true, `${method} ${path} ?${parameter.name}`)
      }
      for (const response of Object.values((operation as unknown as OpenApiDoc['paths'][string][string]).responses)) {
        const stream = response.content?.['text/event-stream']?.schema as { 'x-events'?: Record<string, string> } | undefined
        if (stream === undefined) continue
        t.ok(Object.keys(stream['x-events'] ?? {}).length > 0, `${method} ${path} names its events`)
        for (const component of Object.values(stream['x-events'] ?? {})) t.ok(doc.components.schemas[component], `${component} is a component`)
      }
    }
  }
})

t.test('the committed contract is a valid OpenAPI 3.1 document', async (t) => {
  const doc = JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')) as OpenApiDoc
  const validated = await SwaggerParser.validate(structuredClone(doc) as never) as unknown as OpenApiDoc
  t.equal(validated.openapi, '3.1.0')
  const operationIds = Object.values(doc.paths).flatMap((ops) => Object.values(ops).map((op) => op.operationId))
  t.ok(operationIds.every((id) => typeof id === 'string'), 'every operation has an operationId')
  t.equal(new Set(operationIds).size, operationIds.length, 'operationIds are unique')
})

t.test('shared schemas are named components referenced by $ref, not inlined copies', async (t) => {
  const doc = JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')) as OpenApiDoc
  for (const name of ['ErrorCode', 'ErrorResponse', 'HealthLive', 'HealthReady']) {
    t.ok(doc.components.schemas[name], `${name} is a component`)
  }
  const ready = doc.paths['/health/ready']?.get?.responses
  t.same(ready?.['200']?.content?.['application/json']?.schema, { $ref: '#/components/schemas/HealthReady' })
  t.same(ready?.['503']?.content?.['application/json']?.schema, { $ref: '#/components/schemas/HealthReady' })
  t.notMatch(JSON.stringify(doc.paths), /"const":"INTERNAL_ERROR"/, 'the error code union is not copied into the paths')
})

t.test('the served /openapi.json is the committed contract, and /docs serves Swagger UI', async (t) => {
  const { app } = await build(t)
  const served = await app.inject({ url: '/openapi.json' })
  t.equal(served.statusCode, 200)
  t.same(served.json(), JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')))
  const docs = await app.inject({ url: '/docs' })
  t.equal(docs.statusCode, 200)
  t.match(docs.headers['content-type'], /text\/html/)
  t.match(docs.body, /swagger/i)
})

t.test('docs/env.md is what `npm run docs` generates from the config schema', async (t) => {
  const committed = readFileSync(ENV_DOC_FILE, 'utf8')
  t.ok(committed === generateEnvDoc(), 'docs/env.md is stale: run `npm run docs` and commit docs/env.md.')
  for (const name of ['PORT', 'DATABASE_URL', 'OPENAI_API_KEY', 'BG_REMOVAL_PROVIDERS', 'PORTAL_JWKS_URL']) {
    t.match(committed, `| \`${name}\` |`)
  }
})

t.test('a shared schema without $id would get a generated component name', async (t) => {
  const build = swaggerOptions.refResolver?.buildLocalReference
  t.equal(build?.({ $id: 'Named' }, {}, '', 0), 'Named')
  t.equal(build?.({ type: 'string' }, {}, '', 3), 'def-3')
})

t.test('errorResponses groups codes by status and always includes INTERNAL_ERROR', async (t) => {
  const responses = errorResponses('UNAUTHENTICATED', 'TOKEN_EXPIRED', 'QUOTA_EXCEEDED', 'UNAUTHENTICATED') as unknown as Record<number, { $ref: string, description: string }>
  t.same(Object.keys(responses), ['401', '402', '500'])
  t.same(responses[401], { $ref: 'ErrorResponse', description: 'Error envelope with code UNAUTHENTICATED or TOKEN_EXPIRED.' })
  t.equal(responses[500]?.description, 'Error envelope with code INTERNAL_ERROR.')
})

t.test('docs/privacy.md is what `npm run docs` generates from the feature registry', async (t) => {
  const committed = readFileSync(PRIVACY_DOC_FILE, 'utf8')
  t.ok(committed === generatePrivacyDoc(), 'docs/privacy.md is stale: run `npm run docs` and commit docs/privacy.md.')
  for (const field of ['`message`', '`history`', '`context.settings`', '`image`']) t.match(committed, `| ${field} |`)
})
