/** Errors every layer may raise. */

/**
 * Bad user input (missing folder, corrupt file, a flag out of range): the CLI prints its message
 * in one line and exits with status 2, never a stack trace.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}
