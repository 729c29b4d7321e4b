import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import {
  EndpointAddressError,
  endpointFromEnv,
  grpcTarget,
  parseEndpointAddress,
} from "../../src/spiffe/workload/address.js";
import { oracle } from "../helpers/paths.js";

interface SocketCase {
  input: string;
  valid: boolean;
  reason?: string;
  altReasons?: string[];
  target?: string;
}

const cases = JSON.parse(readFileSync(oracle("spiffe", "workload-socket-uri.json"), "utf8")) as SocketCase[];

/** `unix:/p` and `unix:///p` name the same socket; go-spiffe keeps the form it was given. */
function canonicalTarget(t: string): string {
  return t.replace(/^unix:(\/\/)?/, "unix://");
}

describe("SPIFFE_ENDPOINT_SOCKET (workload-socket-uri.json)", () => {
  it("has the 54 cases", () => {
    assert.equal(cases.length, 54);
  });

  for (const c of cases) {
    it(`${JSON.stringify(c.input)} → ${c.valid ? "valid" : c.reason}`, () => {
      if (c.valid) {
        const addr = parseEndpointAddress(c.input);
        if (c.target !== undefined) {
          const got = grpcTarget(addr);
          if (addr.kind === "tcp") assert.equal(got, c.target);
          else assert.equal(canonicalTarget(got), canonicalTarget(c.target));
        }
        return;
      }
      assert.throws(
        () => parseEndpointAddress(c.input),
        (err: unknown) => {
          assert.ok(err instanceof EndpointAddressError, `not an EndpointAddressError: ${String(err)}`);
          const ok = [c.reason, ...(c.altReasons ?? [])];
          assert.ok(ok.includes(err.reason), `reason ${err.reason}, expected one of ${ok.join(", ")}`);
          assert.equal(err.code, `invalid-endpoint-address:${err.reason}`);
          return true;
        },
      );
    });
  }
});

describe("parsed addresses", () => {
  it("gives the unix path and the tcp host and port", () => {
    assert.deepEqual(parseEndpointAddress("unix:///run/agent.sock"), {
      kind: "unix",
      path: "/run/agent.sock",
    });
    assert.deepEqual(parseEndpointAddress("unix:/run/agent.sock"), { kind: "unix", path: "/run/agent.sock" });
    assert.deepEqual(parseEndpointAddress("UNIX:///a%20b.sock"), { kind: "unix", path: "/a b.sock" });
    assert.deepEqual(parseEndpointAddress("tcp://127.0.0.1:8000"), {
      kind: "tcp",
      host: "127.0.0.1",
      port: 8000,
    });
    assert.deepEqual(parseEndpointAddress("tcp://[0:0::1]:1"), { kind: "tcp", host: "::1", port: 1 });
    assert.equal(grpcTarget({ kind: "tcp", host: "::1", port: 1 }), "[::1]:1");
  });

  it("refuses invalid ports and hosts", () => {
    for (const [input, reason] of [
      ["tcp://1.2.3.4:65536", "tcp-port-invalid"],
      ["tcp://1.2.3.4:ab", "tcp-port-invalid"],
      ["tcp://1.2.3.4:", "tcp-port-missing"],
      ["tcp://01.2.3.4:5", "tcp-host-not-ip"],
      ["tcp://[fe80::1%25eth0]:5", "tcp-host-not-ip"],
      ["unix:///a%ZZ", "not-uri"],
      ["unix:///a%00", "not-uri"],
    ] as const) {
      assert.throws(() => parseEndpointAddress(input), { reason }, input);
    }
  });
});

describe("endpointFromEnv", () => {
  it("reads SPIFFE_ENDPOINT_SOCKET", () => {
    assert.deepEqual(endpointFromEnv({ SPIFFE_ENDPOINT_SOCKET: "unix:///tmp/agent.sock" }), {
      kind: "unix",
      path: "/tmp/agent.sock",
    });
  });
  it("reports an unset variable and an invalid value", () => {
    assert.throws(() => endpointFromEnv({}), { reason: "unset" });
    assert.throws(() => endpointFromEnv({ SPIFFE_ENDPOINT_SOCKET: "" }), { reason: "scheme" });
  });
});
