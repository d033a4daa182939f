import Type, { type Static } from 'typebox'
import { isoTime } from './refs.js'

/** Built-in accounts (SPEC §14). */
const Email = Type.String({ minLength: 3, maxLength: 254, description: 'An email address; compared in lower case.', examples: ['ada@example.com'] })
const Password = (description: string) => Type.String({ minLength: 1, maxLength: 1024, description })

export const RegisterRequest = Type.Object({
  email: Email,
  password: Password('10 to 256 characters, not the email.')
}, { $id: 'RegisterRequest', title: 'RegisterRequest', additionalProperties: false })

export const Account = Type.Object({
  id: Type.String({ pattern: '^acc_[0-9A-Za-z]{16}$', description: 'The account id: the user id of every other route.' }),
  email: Type.String(),
  createdAt: isoTime('When the account was created.')
}, { $id: 'Account', title: 'Account', additionalProperties: false })

export const AccountMe = Type.Object({
  id: Type.String(),
  email: Type.String(),
  createdAt: isoTime('When the account was created.'),
  plan: Type.Union([Type.String(), Type.Null()], { description: 'The license plan (LOCAL_ACCOUNTS_PLAN at sign-up); null when the license was removed.' })
}, { $id: 'AccountMe', title: 'AccountMe', additionalProperties: false })

/** OAuth2's password grant (RFC 6749 §4.3), as a form or as JSON; the client fields Swagger UI may add are accepted. */
export const LoginRequest = Type.Object({
  grant_type: Type.Optional(Type.Literal('password', { description: 'OAuth2 grant type; only `password`.' })),
  username: Type.String({ minLength: 1, maxLength: 1024, description: 'The account\'s email.' }),
  password: Password('The password.'),
  scope: Type.Optional(Type.String({ maxLength: 1024, description: 'Ignored: an account token has no scopes.' })),
  client_id: Type.Optional(Type.String({ maxLength: 256, description: 'Ignored.' })),
  client_secret: Type.Optional(Type.String({ maxLength: 256, description: 'Ignored.' }))
}, { $id: 'LoginRequest', title: 'LoginRequest', additionalProperties: false })

/** OAuth2's own token response fields (RFC 6749 §5.1). */
export const AccessToken = Type.Object({
  access_token: Type.String({ description: 'The account token: `Authorization: Bearer` for /v1/auth/* and for POST /v1/ai/tokens.' }),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ description: 'Seconds until it expires (LOCAL_ACCOUNTS_TOKEN_TTL_SECONDS).' })
}, { $id: 'AccessToken', title: 'AccessToken', additionalProperties: false })

export const PasswordChange = Type.Object({
  currentPassword: Password('The password now.'),
  newPassword: Password('10 to 256 characters, not the email.')
}, { $id: 'PasswordChange', title: 'PasswordChange', additionalProperties: false })

export const AccountDeleted = Type.Object({
  id: Type.String(),
  deleted: Type.Record(Type.String(), Type.Integer(), { description: 'Records deleted per section of the user\'s data.' })
}, { $id: 'AccountDeleted', title: 'AccountDeleted', additionalProperties: false })
export type AccountDeletedValue = Static<typeof AccountDeleted>

export const accountSchemas = [RegisterRequest, Account, AccountMe, LoginRequest, AccessToken, PasswordChange, AccountDeleted]
