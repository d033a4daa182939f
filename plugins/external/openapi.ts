import swagger, { type FastifyDynamicSwaggerOptions } from '@fastify/swagger'
import swaggerUi, { type FastifySwaggerUiOptions } from '@fastify/swagger-ui'
import fp from 'fastify-plugin'

/** Version of the HTTP contract (not of the package): bumped when the contract changes. */
export const API_VERSION = '1.0.0'

interface Parameter { in: string, required?: boolean, schema?: { default?: unknown } }

/** The contract, generated from the route schemas; shared schemas keep their `$id` as component names. */
export const swaggerOptions: FastifyDynamicSwaggerOptions = {
  openapi: {
    openapi: '3.1.0',
    info: {
      title: 'portal-ai-api',
      version: API_VERSION,
      description: 'The AI layer of the LightLane portal: Settings Assistant chat and background removal, ' +
        'on behalf of a signed-in, licensed user. Every error uses the ErrorResponse envelope, except under /v1/openai (OpenAI\'s error shape, same codes).'
    },
    tags: [
      { name: 'health', description: 'Liveness and readiness; no authentication.' },
      { name: 'features', description: 'What each AI feature sends to which provider (the disclosure manifest).' },
      { name: 'settings-assistant', description: 'Stage 1: the Settings Assistant chat, JSON or streamed (SSE), with setting suggestions checked against the catalog.' },
      { name: 'background-removal', description: 'Stage 2: background removal of one image (remove.bg or a self-hosted rembg, with fallback).' },
      { name: 'models', description: 'The model catalog: vendors, limits, prices, and which models your plan can use.' },
      { name: 'billing', description: 'Credits in money: balance, usage by period, transactions, limits, and what a call would cost.' },
      { name: 'staging', description: 'Virtual staging of room photos: the style catalog and its preview images.' },
      { name: 'risk-scans', description: 'Document risk scans: a PDF, DOCX, TXT or MD file or text in, the risks it states out, kept in your history.' },
      { name: 'chats', description: 'Conversations kept by the service over the model catalog: JSON or streamed replies, history, feedback.' },
      { name: 'openai-compatible', description: 'Chat Completions and Models in OpenAI\'s wire format over the model catalog: any OpenAI SDK with an AI token as its API key.' },
      { name: 'tasks', description: 'The productivity assistant\'s tasks: yours to list, create, change and delete; the assistant only proposes them.' },
      { name: 'integrations', description: 'Google Calendar connected with OAuth (authorization code + PKCE): connect, list, disconnect, upcoming events.' },
      { name: 'files', description: 'Stored files (results of features), read with the owner\'s AI token or through a signed, expiring link.' },
      { name: 'webhooks', description: 'Your endpoints for notifications of finished work, signed per the Standard Webhooks convention.' },
      { name: 'data', description: 'Everything the service keeps about you: export it, or delete it.' },
      { name: 'accounts', description: 'Built-in accounts (LOCAL_ACCOUNTS=on): register, sign in with the OAuth2 password grant, change the password, delete the account.' },
      { name: 'tokens', description: 'AI tokens: exchange a portal credential or an API key for a short-lived AI token.' },
      { name: 'admin', description: 'Licenses, API keys and audit, behind ADMIN_TOKEN. The CLI is a client of these routes.' }
    ],
    components: {
      securitySchemes: {
        aiToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'AI token from POST /v1/ai/tokens.' },
        portalToken: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'The portal\'s own access token.' },
        apiKey: { type: 'http', scheme: 'bearer', description: 'An API key `pak_live_…` or `pak_test_…`.' },
        adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN of the deployment.' },
        accountPassword: {
          type: 'oauth2',
          description: 'A built-in account (LOCAL_ACCOUNTS=on): sign in with its email and password; the access token is sent as a bearer token.',
          flows: { password: { tokenUrl: '/v1/auth/login', scopes: {} } }
        }
      }
    }
  },
  // A query parameter with a default is the client's to leave out: the route's schema lists it as required only
  // because validation fills it in before the handler runs.
  transformObject: (document) => {
    const openapiObject = (document as { openapiObject: { paths: Record<string, Record<string, { parameters?: Parameter[] }>> } }).openapiObject
    for (const operations of Object.values(openapiObject.paths)) {
      for (const operation of Object.values(operations)) {
        for (const parameter of operation.parameters ?? []) {
          if (parameter.in === 'query' && parameter.schema?.default !== undefined) parameter.required = false
        }
      }
    }
    return openapiObject as ReturnType<NonNullable<FastifyDynamicSwaggerOptions['transformObject']>>
  },
  refResolver: {
    buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}`
  }
}

/** Swagger UI at /docs, over the same document as /openapi.json. */
export const swaggerUiOptions: FastifySwaggerUiOptions = {
  routePrefix: '/docs',
  uiConfig: { deepLinking: true, displayRequestDuration: true, tryItOutEnabled: false }
}

export default fp(async function openapi (app) {
  await app.register(swagger, swaggerOptions)
  await app.register(swaggerUi, swaggerUiOptions)
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
}, { name: 'openapi', fastify: '5.x', dependencies: ['schemas'] })
