/**
 * Every failure of the SPIFFE library is a SpiffeError with a stable `code` (what kind of
 * thing failed, for programs) and a message that names the rule that failed (for people).
 * Messages never contain private keys or tokens.
 */
export class SpiffeError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "SpiffeError";
  }
}
