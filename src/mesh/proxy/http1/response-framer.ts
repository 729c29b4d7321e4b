/**
 * Counts where HTTP/1.1 responses end on the upstream side (RFC 9112 §6.3), so that a proxy
 * knows whether every forwarded request has been answered: to send a locally made 403 after
 * the responses still in flight, and to know when a connection is idle. It frames, it does not
 * parse for meaning: the bytes go to the client untouched.
 *
 * Heads are judged with the same line rules as requests (see request-parser.ts); any problem
 * is HttpHeadError(400, "bad-response") with the request-side code as `detail`. Response rules
 * in the order they are checked when a head is complete: Content-Length together with
 * Transfer-Encoding ("conflicting-length"), Transfer-Encoding in an HTTP/1.0 response
 * ("te-in-http10"), Transfer-Encoding syntax, chunked applied twice ("te-chunked-twice"),
 * Content-Length values. Then the body: none for 1xx (interim; 101 switches protocols), for
 * 204 and 304 and for a response to HEAD; a 2xx to CONNECT switches to a tunnel; chunked when
 * the final coding is chunked; until the upstream closes when another coding is final;
 * Content-Length; else until the upstream closes.
 */
import { HttpHeadError } from "./errors.js";
import {
  appended,
  ChunkedBodyScanner,
  contentLengthOf,
  DEFAULT_LIMITS,
  type FieldLineBounds,
  type HeadLineSink,
  HeadReader,
  type HeadText,
  type ParserLimits,
  scanFieldLine,
  transferCodingsOf,
} from "./request-parser.js";

const CR = 13;
const SP = 32;
const STATUS_LINE_PREFIX = Uint8Array.from("HTTP/1.", (c) => c.charCodeAt(0));
const CONTENT_LENGTH = "content-length";
const TRANSFER_ENCODING = "transfer-encoding";

/** What a complete response head says about framing. */
interface ResponseHeadFacts {
  readonly status: number;
  readonly contentLength: number | undefined;
  /** The lower-cased codings, undefined without Transfer-Encoding. */
  readonly codings: readonly string[] | undefined;
}

/** Collects the lines of one response head. */
class ResponseHeadBuilder implements HeadLineSink {
  private status = 0;
  private http10 = false;
  private headerCount = 0;
  private contentLengths: string[] | undefined;
  private transferEncodings: string[] | undefined;
  private readonly bounds: FieldLineBounds = { nameEnd: 0, valueStart: 0, valueEnd: 0 };

  constructor(private readonly maxHeaders: number) {}

  line(buf: Buffer, start: number, end: number, startLine: boolean, text: HeadText): void {
    if (startLine) this.statusLine(buf, start, end);
    else this.fieldLine(buf, start, end, text);
  }

  /** status-line = HTTP-version SP 3DIGIT [ SP reason-phrase ], status 100 to 599. */
  private statusLine(buf: Buffer, start: number, end: number): void {
    const cr = buf.indexOf(CR, start);
    if (cr >= 0 && cr < end) throw new HttpHeadError(400, "bare-cr");
    let valid = end - start >= 12 && buf[start + 8] === SP;
    for (let i = 0; valid && i < STATUS_LINE_PREFIX.length; i++) {
      if (buf[start + i] !== STATUS_LINE_PREFIX[i]) valid = false;
    }
    const minor = buf[start + 7];
    if (minor !== 0x30 && minor !== 0x31) valid = false;
    let status = 0;
    for (let i = start + 9; valid && i < start + 12; i++) {
      const c = buf[i] as number;
      if (c < 0x30 || c > 0x39) valid = false;
      status = status * 10 + (c - 0x30);
    }
    if (valid && end > start + 12) {
      if (buf[start + 12] !== SP) valid = false;
      for (let i = start + 13; valid && i < end; i++) {
        const c = buf[i] as number;
        if (c !== 9 && (c < 0x20 || c === 0x7f)) valid = false;
      }
    }
    if (!valid || status < 100 || status > 599) throw new HttpHeadError(400, "bad-status-line");
    this.status = status;
    this.http10 = minor === 0x30;
  }

  private fieldLine(buf: Buffer, start: number, end: number, text: HeadText): void {
    if (this.headerCount >= this.maxHeaders) throw new HttpHeadError(431, "too-many-headers");
    const b = this.bounds;
    const problem = scanFieldLine(buf, start, end, b);
    if (problem !== undefined) throw new HttpHeadError(400, problem);
    this.headerCount++;
    const nameLength = b.nameEnd - start;
    if (nameLength !== CONTENT_LENGTH.length && nameLength !== TRANSFER_ENCODING.length) return;
    const name = text.slice(start, b.nameEnd).toLowerCase();
    const value = text.slice(b.valueStart, b.valueEnd);
    if (name === CONTENT_LENGTH) this.contentLengths = appended(this.contentLengths, value);
    else if (name === TRANSFER_ENCODING) this.transferEncodings = appended(this.transferEncodings, value);
  }

  /** Judges the complete head and resets the builder for the next one. */
  finish(): ResponseHeadFacts {
    const { status, http10, contentLengths, transferEncodings } = this;
    this.headerCount = 0;
    this.contentLengths = undefined;
    this.transferEncodings = undefined;
    if (contentLengths && transferEncodings) throw new HttpHeadError(400, "conflicting-length");
    let codings: string[] | undefined;
    if (transferEncodings) {
      if (http10) throw new HttpHeadError(400, "te-in-http10");
      const parsed = transferCodingsOf(transferEncodings);
      if (typeof parsed === "string") throw new HttpHeadError(400, parsed);
      if (parsed.indexOf("chunked") !== parsed.lastIndexOf("chunked")) {
        throw new HttpHeadError(400, "te-chunked-twice");
      }
      codings = parsed;
    }
    let contentLength: number | undefined;
    if (contentLengths) {
      const length = contentLengthOf(contentLengths);
      if (typeof length === "string") throw new HttpHeadError(400, length);
      contentLength = length;
    }
    return { status, contentLength, codings };
  }
}

enum State {
  Head,
  LengthBody,
  ChunkedBody,
  UntilClose,
  Switched,
  Closed,
  Failed,
}

export class ResponseFramer {
  private state = State.Head;
  /** Methods of forwarded requests; those before `answered` have their final response. */
  private readonly methods: string[] = [];
  private answered = 0;
  private remaining = 0;
  private status: number | undefined;
  private readonly reader: HeadReader;
  private readonly builder: ResponseHeadBuilder;
  private readonly chunks: ChunkedBodyScanner;
  private failure: HttpHeadError | undefined;

  constructor(limits?: Partial<ParserLimits>) {
    const maxHeadBytes = limits?.maxHeadBytes ?? DEFAULT_LIMITS.maxHeadBytes;
    const maxHeaders = limits?.maxHeaders ?? DEFAULT_LIMITS.maxHeaders;
    const maxChunkExtBytes = limits?.maxChunkExtBytes ?? DEFAULT_LIMITS.maxChunkExtBytes;
    for (const [name, value] of Object.entries({ maxHeadBytes, maxHeaders, maxChunkExtBytes })) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new RangeError(`ResponseFramer: ${name} must be a positive integer, got ${String(value)}`);
      }
    }
    this.reader = new HeadReader({
      maxBytes: maxHeadBytes,
      startLine: true,
      tooLargeReason: "head-too-large",
      bareLfReason: "bare-lf",
      // Only framing headers are read, and rarely: decoding each on its own is cheaper.
      strings: false,
    });
    this.builder = new ResponseHeadBuilder(maxHeaders);
    this.chunks = new ChunkedBodyScanner(maxChunkExtBytes, maxHeadBytes);
  }

  /** Tells it about each forwarded request, in order: the method (a response to HEAD has no body). */
  expect(method: string): void {
    this.methods.push(method);
  }

  /**
   * Feeds upstream bytes; returns how many responses completed in them. After a 101 (or a 2xx
   * to CONNECT) it stops framing and returns 0. Throws HttpHeadError(400, "bad-response") on a
   * malformed response or bytes nobody asked for; the framer is dead afterwards.
   */
  feed(chunk: Buffer): number {
    if (this.failure) {
      throw new HttpHeadError(
        400,
        "bad-response",
        `the framer already refused this stream (${this.failure.detail})`,
      );
    }
    try {
      return this.run(chunk);
    } catch (err) {
      this.state = State.Failed;
      const detail = err instanceof HttpHeadError ? err.reason : `internal-error: ${(err as Error).message}`;
      this.failure = new HttpHeadError(400, "bad-response", detail);
      throw this.failure;
    }
  }

  /** The upstream closed: returns 1 when this ends a response delimited by the close, else 0. */
  end(): number {
    if (this.state === State.Switched || this.state === State.Failed) return 0;
    const untilClose = this.state === State.UntilClose;
    this.state = State.Closed;
    if (!untilClose) return 0;
    this.answeredOne();
    return 1;
  }

  /** Expected responses not yet complete. */
  get outstanding(): number {
    return this.methods.length - this.answered;
  }

  /** After a 101 (or a 2xx to CONNECT): the rest of the stream is not HTTP. */
  get switched(): boolean {
    return this.state === State.Switched;
  }

  /** The status code of the last response (interim ones included) whose head was parsed. */
  get lastStatus(): number | undefined {
    return this.status;
  }

  private run(chunk: Buffer): number {
    const end = chunk.length;
    let completed = 0;
    let pos = 0;
    while (pos < end) {
      switch (this.state) {
        case State.Head: {
          if (this.outstanding === 0) throw new HttpHeadError(400, "unsolicited-response");
          const after = this.reader.read(chunk, pos, this.builder);
          if (after < 0) return completed;
          pos = after;
          completed += this.startResponse(this.builder.finish());
          break;
        }
        case State.LengthBody: {
          const n = Math.min(this.remaining, end - pos);
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) completed += this.complete();
          break;
        }
        case State.ChunkedBody:
          pos = this.chunks.scan(chunk, pos);
          if (this.chunks.done) completed += this.complete();
          break;
        case State.UntilClose:
        case State.Switched:
          return completed;
        case State.Closed:
          throw new HttpHeadError(400, "data-after-close");
        case State.Failed:
          return completed;
      }
    }
    return completed;
  }

  /** Sets up the body of the response whose head just ended; returns 1 when the response is already complete. */
  private startResponse(facts: ResponseHeadFacts): number {
    const { status, contentLength, codings } = facts;
    this.status = status;
    if (status < 200 && status !== 101) return 0;
    const method = this.methods[this.answered];
    if (status === 101 || (method === "CONNECT" && status < 300)) {
      this.answeredOne();
      this.state = State.Switched;
      return 1;
    }
    if (method === "HEAD" || status === 204 || status === 304) return this.complete();
    if (codings) {
      if (codings[codings.length - 1] === "chunked") {
        this.chunks.reset();
        this.state = State.ChunkedBody;
      } else this.state = State.UntilClose;
      return 0;
    }
    if (contentLength === undefined) {
      this.state = State.UntilClose;
      return 0;
    }
    if (contentLength === 0) return this.complete();
    this.remaining = contentLength;
    this.state = State.LengthBody;
    return 0;
  }

  private complete(): number {
    this.answeredOne();
    this.state = State.Head;
    return 1;
  }

  /** Counts a final response; the methods list restarts once all are answered (it would grow with every request of a keep-alive connection). */
  private answeredOne(): void {
    this.answered++;
    if (this.answered === this.methods.length) {
      this.methods.length = 0;
      this.answered = 0;
    }
  }
}
