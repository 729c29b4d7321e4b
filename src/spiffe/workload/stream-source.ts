import { EventEmitter } from "node:events";
import { type BackoffOptions, type Watcher, WorkloadApiClient, WorkloadApiError } from "./client.js";

/** The options every stream-backed source takes. */
export interface StreamSourceOptions {
  /** A client to share; it stays open when the source closes. Default: a client of its own. */
  client?: WorkloadApiClient;
  /** Address for the source's own client (default `SPIFFE_ENDPOINT_SOCKET`). */
  address?: string;
  backoff?: Partial<BackoffOptions>;
  /** Give up when the first state has not come within this time (default: wait). */
  timeoutMs?: number;
}

/** What tells one source from another: its name in messages and the stream it follows. */
export interface StreamSourceKind<T> {
  /** `X.509 source`, as in "the X.509 source is closed". */
  name: string;
  /** What the first message brings, as in "no X.509 context from the Workload API". */
  first: string;
  watch(client: WorkloadApiClient, watcher: Watcher<T>, signal: AbortSignal): Promise<void>;
}

/**
 * A state of type T kept current by a Workload API stream. Events: `update` (T) on each new
 * state, `error` (WorkloadApiError) on each failure of the stream, when someone listens. A
 * PermissionDenied status withdraws the state until the next message. `close()` ends the stream;
 * after it, no timer or socket remains.
 */
export abstract class StreamSource<T> extends EventEmitter {
  readonly #client: WorkloadApiClient;
  readonly #ownsClient: boolean;
  readonly #kind: StreamSourceKind<T>;
  readonly #abort = new AbortController();
  #state: T | undefined;
  #watch: Promise<void> | undefined;
  #closed = false;
  #lastError: WorkloadApiError | undefined;

  protected constructor(options: StreamSourceOptions, kind: StreamSourceKind<T>) {
    super();
    this.#client =
      options.client ??
      new WorkloadApiClient({
        ...(options.address === undefined ? {} : { address: options.address }),
        ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
      });
    this.#ownsClient = options.client === undefined;
    this.#kind = kind;
  }

  /** Opens the stream and resolves after the first state arrived; on failure, closes the source. */
  protected async open(timeoutMs: number | undefined): Promise<void> {
    try {
      await this.#start(timeoutMs);
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  #start(timeoutMs: number | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const settle = (err?: unknown) => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        if (err === undefined) resolve();
        else reject(err);
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const last = this.#lastError ? ` (last error: ${this.#lastError.message})` : "";
          settle(
            new WorkloadApiError(
              "timeout",
              `no ${this.#kind.first} from the Workload API within ${timeoutMs} ms${last}`,
            ),
          );
        }, timeoutMs);
      }
      this.#watch = this.#kind.watch(
        this.#client,
        {
          onUpdate: (state) => {
            this.#state = state;
            settle();
            this.emit("update", state);
          },
          onError: (err) => {
            this.#lastError = err;
            // PermissionDenied withdraws every SVID and bundle: stop using them (API §5.2.1, §6.2.2)
            // until a new message.
            if (err.kind === "PermissionDenied") this.#state = undefined;
            if (this.listenerCount("error") > 0) this.emit("error", err);
          },
        },
        this.#abort.signal,
      );
      this.#watch.then(
        () =>
          settle(new WorkloadApiError("closed", `the ${this.#kind.name} was closed before its first update`)),
        (err: unknown) => settle(err),
      );
    });
  }

  protected get client(): WorkloadApiClient {
    return this.#client;
  }

  /** The current state, undefined while the Workload API denies the workload; throws once closed. */
  protected current(): T | undefined {
    if (this.#closed) throw this.closedError();
    return this.#state;
  }

  protected closedError(): WorkloadApiError {
    return new WorkloadApiError("closed", `the ${this.#kind.name} is closed`);
  }

  /** The last error the stream reported (the state still comes from the last good message). */
  get lastError(): WorkloadApiError | undefined {
    return this.#lastError;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Cancels the stream and waits for it to end; closes the client when the source made it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    await this.#watch?.catch(() => undefined);
    if (this.#ownsClient) await this.#client.close();
  }
}
