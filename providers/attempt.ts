/** Why an attempt was stopped by us: its client left, the whole-call deadline passed, or nothing came for too long. */
export type StopReason = 'client' | 'deadline' | 'idle'

/**
 * One attempt's abort controller: aborted by the caller's signal, by the whole-call deadline, or by the idle
 * timer (no byte within `idleMs`); remembers which.
 */
export function attemptControl (signal: AbortSignal, deadline: AbortSignal, idleMs: number | null) {
  const controller = new AbortController()
  let reason: StopReason | null = null
  const stop = (why: StopReason) => { reason ??= why; controller.abort() }
  const onClient = () => stop('client')
  const onDeadline = () => stop('deadline')
  signal.addEventListener('abort', onClient, { once: true })
  deadline.addEventListener('abort', onDeadline, { once: true })
  let timer: NodeJS.Timeout | undefined
  const touch = () => {
    if (idleMs === null) return
    clearTimeout(timer)
    timer = setTimeout(() => stop('idle'), idleMs)
  }
  // Rejects once the attempt is stopped, whatever the transport does with a pending read.
  const stopped = new Promise<never>((_resolve, reject) => {
    controller.signal.addEventListener('abort', () => reject(new Error('attempt stopped')), { once: true })
  })
  stopped.catch(() => {})
  if (signal.aborted) onClient()
  touch()
  const release = () => {
    clearTimeout(timer)
    signal.removeEventListener('abort', onClient)
    deadline.removeEventListener('abort', onDeadline)
  }
  return {
    signal: controller.signal,
    /** The controller itself, for a reader that stops the attempt when it is done with it (the SDK's stream parser). */
    controller,
    touch,
    /** `work`, or a rejection as soon as the attempt is stopped (a late rejection of `work` is then ignored). */
    race <T>(work: Promise<T>): Promise<T> {
      work.catch(() => {})
      return Promise.race([work, stopped])
    },
    reason: () => reason,
    /**
     * The attempt's answer was read whole: stop its timer. Nothing of it is open upstream, so it is not aborted (an
     * abort makes a DOMException and an Error with their stack traces: a few per cent of a JSON call's CPU).
     */
    done: release,
    /** The attempt is over early (failed, stopped, or its reader left): stop its timer and anything of it still open upstream. */
    end () {
      release()
      controller.abort()
    }
  }
}
