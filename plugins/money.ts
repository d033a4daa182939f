/** Money is integers: micro-USD inside, whole cents where a person reads it. No float arithmetic on amounts. */
export const MICRO_PER_CENT = 10_000

/** Whole cents of a micro-USD amount, rounded half up. */
export const toCents = (microUsd: number) => Math.floor((microUsd + MICRO_PER_CENT / 2) / MICRO_PER_CENT)

/** Micro-USD of whole cents. */
export const centsToMicro = (cents: number) => cents * MICRO_PER_CENT

/** A provider cost with the plan's markup added, rounded up to a whole micro-USD (140 % of 1 µUSD is 2). */
export function withMarkup (costMicroUsd: number, markupPercent: number): number {
  return Number((BigInt(costMicroUsd) * BigInt(100 + markupPercent) + 99n) / 100n)
}
