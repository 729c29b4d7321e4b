import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compareConnLists, parseTxt } from "./connlist.js";

describe("semantic connection-list comparison", () => {
  it("equates different cuts of the same external space", () => {
    const a = parseTxt("0.0.0.0-255.255.255.255[External] => ns/a[Pod] : TCP 80\n");
    const b = parseTxt(
      "0.0.0.0-9.255.255.255[External] => ns/a[Pod] : TCP 80\n10.0.0.0-255.255.255.255[External] => ns/a[Pod] : TCP 80\n",
    );
    assert.deepEqual(compareConnLists(a, b), []);
  });

  it("equates All Connections with its three protocols and merges duplicate lines", () => {
    const a = parseTxt("ns/a[Pod] => ns/b[Pod] : All Connections\n");
    const b = parseTxt(
      "ns/a[Pod] => ns/b[Pod] : SCTP 1-65535,TCP 1-65535\nns/a[Pod] => ns/b[Pod] : UDP 1-65535\n",
    );
    assert.deepEqual(compareConnLists(a, b), []);
  });

  it("reports a missing pair, a different port and a missing external atom", () => {
    const a = parseTxt(
      "ns/a[Pod] => ns/b[Pod] : TCP 80\n0.0.0.0-9.255.255.255[External] => ns/a[Pod] : TCP 80\n",
    );
    const b = parseTxt(
      "ns/a[Pod] => ns/b[Pod] : TCP 81\nns/b[Pod] => ns/a[Pod] : UDP 53\n0.0.0.0-255.255.255.255[External] => ns/a[Pod] : TCP 80\n",
    );
    assert.deepEqual(compareConnLists(a, b).sort(), [
      "from-external ns/a[Pod] range 167772160-4294967295: got No Connections, expected TCP 80",
      "ns/a[Pod] => ns/b[Pod]: got TCP 80, expected TCP 81",
      "ns/b[Pod] => ns/a[Pod]: got No Connections, expected UDP 53",
    ]);
  });
});
