import fp from 'fastify-plugin'

/**
 * What the platform keeps, how, and for how long (docs/privacy.md is generated from this; features declare their
 * own in the feature registry). Each entry is also a section of a user's export and deletion where it holds user data.
 */
export const PLATFORM_STORAGE = [
  {
    what: 'Stored files (results of features; uploads while their job runs)',
    where: 'FILES_DIR on the instance, or the S3 bucket of S3_BUCKET; a `files` row with owner, type, size and SHA-256',
    encrypted: 'By the store (disk or bucket encryption is the operator\'s); never public: read with the owner\'s AI token or a signed link valid FILES_URL_TTL_SECONDS',
    kept: 'FILE_RETENTION_DAYS (30) for results, deleted by a daily job; uploads as soon as their job ends; at once on DELETE /v1/ai/me/data'
  },
  {
    what: 'Webhook endpoints (url, events, description) and their signing secrets',
    where: 'Tables `webhook_endpoints` and `webhook_deliveries` (event type, ids and statuses sent, HTTP status of each attempt)',
    encrypted: 'The url (it may carry a token), the description and the signing secret, with AES-256-GCM under CONTENT_KEYS, bound to their row; events and statuses in plain text',
    kept: 'Until the user deletes the endpoint or their data; deliveries with their endpoint'
  },
  {
    what: 'Jobs (work that runs after a request was answered)',
    where: 'The job queue\'s schema (JOBS_SCHEMA) in the same database: ids and statuses only, never content',
    encrypted: 'Not needed: a job carries ids; what it works on is read from its own (encrypted) record',
    kept: 'Finished jobs 7 days'
  },
  {
    what: 'Usage ledger and audit trail',
    where: 'Tables `usage_ledger` (feature, provider, model, units, cost, what was charged and at which prices, request id, chat id) and `audit_events` (who did what, when)',
    encrypted: 'Not needed: no content, no keys',
    kept: 'Kept as billing and security records, also after a user\'s data is deleted'
  },
  {
    what: 'Built-in accounts (only with LOCAL_ACCOUNTS=on)',
    where: 'Tables `accounts` (email, password hash, a counter of password changes) and `auth_attempts` (failed sign-ins per account and per address in the last 15 minutes)',
    encrypted: 'The email with AES-256-GCM under CONTENT_KEYS, found by a keyed hash (HMAC-SHA-256); the password only as an argon2id hash; attempts under keyed hashes of the email and the address, never either itself',
    kept: 'Until DELETE /v1/auth/me (which also deletes every section of the user\'s data, their API keys and license); attempts 15 minutes'
  },
  {
    what: 'Tasks (productivity assistant)',
    where: 'Table `tasks`: owner, status, due day, times',
    encrypted: 'The title, with AES-256-GCM under CONTENT_KEYS, bound to its row; status and due day in plain text (for the list filters)',
    kept: 'Until the user deletes the task or their data'
  },
  {
    what: 'Google Calendar connections',
    where: 'Table `integrations` (owner, mode, status, scopes, when connected) and `oauth_states` (connects under way: the state only as its SHA-256)',
    encrypted: 'The refresh token, the access token and the PKCE verifier, with AES-256-GCM under CONTENT_KEYS, bound to their row. Calendar events are never stored: read from Google on each request and passed on',
    kept: 'Until the user disconnects (revoked at Google too) or deletes their data; states 10 minutes, and at most until the next connect'
  },
  {
    what: 'Credits (plans billed in money)',
    where: 'Tables `credit_accounts` (purchased credits left, held, charged so far), `credit_months` (free credits used, charges of the month), `credit_days` (tokens of the day), `credit_reservations` (holds of calls under way) and `credit_grants` (credits added, with the operator\'s reason)',
    encrypted: 'Not needed: amounts and ids, no content',
    kept: 'Kept as billing records, also after a user\'s data is deleted; holds until their call ends (at most 5 minutes)'
  }
] as const

/**
 * What one part of the service keeps about a user, for the data export and the deletion request (SPEC §11).
 * Every feature and platform plugin that stores anything for a user registers one; the routes know none by name.
 */
export interface UserDataSection {
  /** The key of this section in the export (`files`, `webhooks`, `chats`…). */
  name: string
  /** Everything kept, decrypted, as the user would read it; no internal keys or secrets. */
  export: (userId: string) => Promise<unknown>
  /** Deletes it for real (bytes included) and revokes what points outside; returns how many records went. */
  delete: (userId: string) => Promise<number>
}

export function createUserData () {
  const sections = new Map<string, UserDataSection>()
  return {
    register (section: UserDataSection) {
      if (sections.has(section.name)) throw new Error(`user data section ${section.name} is registered twice`)
      sections.set(section.name, section)
    },
    get sections () { return [...sections.keys()] },
    async export (userId: string): Promise<Record<string, unknown>> {
      const out: Record<string, unknown> = {}
      for (const section of sections.values()) out[section.name] = await section.export(userId)
      return out
    },
    /** Every section, in registration order; returns the records deleted per section. */
    async delete (userId: string): Promise<Record<string, number>> {
      const out: Record<string, number> = {}
      for (const section of sections.values()) out[section.name] = await section.delete(userId)
      return out
    }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    userData: ReturnType<typeof createUserData>
  }
}

export default fp(async function userData (app) {
  app.decorate('userData', createUserData())
}, { name: 'user-data', fastify: '5.x' })
