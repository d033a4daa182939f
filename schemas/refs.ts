import Type, { type Static, type TSchema } from 'typebox'

/** A timestamp in the contract: ISO 8601, UTC. */
export const isoTime = (description: string) => Type.String({ format: 'date-time', description })

/** A reference to a shared schema by its `$id`, typed as the schema it points to. */
export const ref = <S extends TSchema>(schema: S & { $id?: string }) =>
  Type.Unsafe<Static<S>>(Type.Ref(schema.$id as string))
