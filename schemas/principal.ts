import Type, { type Static } from 'typebox'

/** Who a request acts for, once authenticated. */
export const Principal = Type.Object({
  userId: Type.String({ description: 'The portal user id (`sub`).' }),
  plan: Type.String({ description: 'The plan the user is licensed for.' }),
  mode: Type.Union([Type.Literal('live'), Type.Literal('test')], { description: '`test` calls go to sandbox providers only.' }),
  credential: Type.Union([Type.Literal('portal'), Type.Literal('api-key'), Type.Literal('ai-token'), Type.Literal('admin')])
}, { $id: 'Principal', title: 'Principal' })
export type PrincipalValue = Static<typeof Principal>
