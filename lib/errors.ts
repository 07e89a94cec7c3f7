/**
 * Errors that end a command. Each carries the exit code an operator's script sees:
 * 2 for bad flags or config (nothing was changed), 1 for a runtime failure.
 */

/** Bad flags, a bad or missing network config: exit code 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A failure at run time (etcd unreachable, network exhausted, lease lost): exit code 1. */
export class OverlayError extends Error {
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "OverlayError";
    this.exitCode = options.exitCode ?? 1;
  }
}

/** The exit code for any thrown value: ours carry one, anything else is 1. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError || error instanceof OverlayError) return error.exitCode;
  return 1;
}

/** The message of any thrown value, on one line. */
export function messageOf(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s*\n\s*/g, " ");
}
