import type net from "node:net";

interface Watched {
  /** Bytes read and written when last looked at. */
  traffic: number;
  /** When that count last changed (performance.now()). */
  since: number;
}

const trafficOf = (socket: net.Socket): number => socket.bytesRead + socket.bytesWritten;

/**
 * Closes connections that carried no byte either way for `idleMs`, looking every `idleMs / 4`:
 * one timer for every connection of a sidecar. A socket timeout (socket.setTimeout) does the same
 * but re-arms a timer on every read and every write, on the path each request takes.
 */
export class IdleSweeper {
  private readonly watched = new Map<net.Socket, Watched>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly idleMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  watch(socket: net.Socket): void {
    if (socket.destroyed || this.watched.has(socket)) return;
    this.watched.set(socket, { traffic: trafficOf(socket), since: this.now() });
    socket.once("close", () => this.watched.delete(socket));
    this.timer ??= setInterval(() => this.sweep(), Math.max(1, Math.floor(this.idleMs / 4))).unref();
  }

  /** Stops watching a connection (one that found another way to time out). */
  unwatch(socket: net.Socket): void {
    this.watched.delete(socket);
  }

  /** How many connections are watched. */
  get size(): number {
    return this.watched.size;
  }

  /** Closes the connections idle for idleMs or more (the timer calls it; tests may too). */
  sweep(): void {
    const now = this.now();
    for (const [socket, state] of this.watched) {
      const traffic = trafficOf(socket);
      if (traffic !== state.traffic) {
        state.traffic = traffic;
        state.since = now;
      } else if (now - state.since >= this.idleMs) {
        this.watched.delete(socket);
        socket.destroy();
      }
    }
    if (this.watched.size === 0) this.stop();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
