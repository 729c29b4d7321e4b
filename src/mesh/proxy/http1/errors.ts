import type { ParseEvent } from "./request-parser.js";

/** The statuses a malformed HTTP/1.1 message is answered with (408: the head did not arrive in time). */
export type HttpHeadErrorStatus = 400 | 408 | 413 | 431 | 501 | 505;

/**
 * A request (or, from the ResponseFramer, a response) that Tessera refuses to frame. `reason` is a
 * stable machine code ("conflicting-length", "obs-fold", "bad-request-line", "head-too-large",
 * "bad-response", ...); `detail` narrows it where one reason covers several rules (the
 * ResponseFramer reports every problem as "bad-response" with the request-side code as detail).
 */
export class HttpHeadError extends Error {
  /**
   * What the failing feed() produced before the error, in order: a pipelined request that was
   * complete before the malformed one can still be forwarded and answered before the refusal.
   */
  preceding: readonly ParseEvent[] = [];

  constructor(
    readonly status: HttpHeadErrorStatus,
    readonly reason: string,
    readonly detail?: string,
  ) {
    super(detail === undefined ? `${status} ${reason}` : `${status} ${reason}: ${detail}`);
    this.name = "HttpHeadError";
  }
}
