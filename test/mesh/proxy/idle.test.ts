import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type net from "node:net";
import { describe, it } from "node:test";
import { IdleSweeper } from "../../../src/mesh/proxy/idle.js";

/** What the sweeper reads of a socket: byte counts, destroy() and 'close'. */
class FakeSocket extends EventEmitter {
  bytesRead = 0;
  bytesWritten = 0;
  destroyed = false;
  destroy(): void {
    this.destroyed = true;
    this.emit("close");
  }
}

function setup(idleMs: number) {
  let now = 0;
  const sweeper = new IdleSweeper(idleMs, () => now);
  const socket = () => {
    const s = new FakeSocket();
    sweeper.watch(s as unknown as net.Socket);
    return s;
  };
  return {
    sweeper,
    socket,
    advance(ms: number) {
      now += ms;
      sweeper.sweep();
    },
  };
}

describe("IdleSweeper", () => {
  it("closes a socket without traffic for the idle time, not before", () => {
    const { sweeper, socket, advance } = setup(1000);
    const s = socket();
    advance(999);
    assert.equal(s.destroyed, false);
    advance(1);
    assert.equal(s.destroyed, true);
    assert.equal(sweeper.size, 0);
    sweeper.stop();
  });

  it("counts reads and writes alike as traffic, from when it saw them", () => {
    const { sweeper, socket, advance } = setup(1000);
    const reader = socket();
    const writer = socket();
    advance(600);
    reader.bytesRead += 10;
    writer.bytesWritten += 10;
    advance(600);
    assert.equal(reader.destroyed || writer.destroyed, false, "traffic 600 ms ago restarted the clock");
    advance(999);
    assert.equal(reader.destroyed || writer.destroyed, false);
    advance(1);
    assert.ok(reader.destroyed && writer.destroyed);
    sweeper.stop();
  });

  it("forgets closed and unwatched sockets", () => {
    const { sweeper, socket, advance } = setup(1000);
    const closed = socket();
    const other = socket();
    closed.emit("close");
    sweeper.unwatch(other as unknown as net.Socket);
    assert.equal(sweeper.size, 0);
    advance(5000);
    assert.equal(other.destroyed, false, "an unwatched socket is left alone");
    sweeper.stop();
  });
});
