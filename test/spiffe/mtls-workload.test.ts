import assert from "node:assert/strict";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { after, describe, it } from "node:test";
import { authorizeId, authorizeMemberOf } from "../../src/spiffe/authorizer.js";
import { SpiffeId, TrustDomain } from "../../src/spiffe/id.js";
import { connectSpiffeTls, createSpiffeTlsServer } from "../../src/spiffe/tls.js";
import { X509Source } from "../../src/spiffe/workload/x509source.js";
import { FakeWorkloadApi, until } from "./fake-workload-api.js";
import { FixtureCa, x509Response } from "./workload-fixtures.js";

/**
 * The README's example, end to end: two workloads get their SVIDs from a Workload API, talk
 * mTLS, and the server picks up a rotated SVID pushed by the API without restarting.
 */
describe("mTLS between two workloads fed by the Workload API", () => {
  const cleanup: Array<() => unknown> = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  it("serves the client, names the peer on both sides, and follows a rotation push", async () => {
    const ca = await FixtureCa.create("example.org");
    const serverApi = await FakeWorkloadApi.start();
    const clientApi = await FakeWorkloadApi.start();
    cleanup.push(
      () => serverApi.dispose(),
      () => clientApi.dispose(),
    );
    serverApi.x509.push(x509Response([{ svid: await ca.issue("/server"), bundle: ca.bundleDer }]));
    clientApi.x509.push(x509Response([{ svid: await ca.issue("/client"), bundle: ca.bundleDer }]));

    const serverSource = await X509Source.create({ address: serverApi.address });
    const clientSource = await X509Source.create({ address: clientApi.address });
    cleanup.push(
      () => serverSource.close(),
      () => clientSource.close(),
    );

    // --- as in README.md ---
    const server = createSpiffeTlsServer(
      serverSource,
      authorizeMemberOf(TrustDomain.parse("example.org")),
      (socket) => {
        socket.end(`hello ${socket.peerId}\n`);
      },
    );
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    cleanup.push(() => server.close());
    const port = (server.address() as AddressInfo).port;
    const ask = async () => {
      const socket = await connectSpiffeTls(
        clientSource,
        authorizeId(SpiffeId.parse("spiffe://example.org/server")),
        {
          host: "127.0.0.1",
          port,
        },
      );
      const serial = socket.getPeerX509Certificate()?.serialNumber;
      socket.setEncoding("utf8");
      let text = "";
      for await (const chunk of socket) text += chunk;
      return { text, serial };
    };
    // --- end ---

    const first = await ask();
    assert.equal(first.text, "hello spiffe://example.org/client\n");

    const rotated = await ca.issue("/server");
    const updated = once(serverSource, "update");
    serverApi.x509.push(x509Response([{ svid: rotated, bundle: ca.bundleDer }]));
    await updated;
    await until(() => serverSource.getX509Svid().leaf.raw.equals(rotated.leafDer), "server source rotated");
    const second = await ask();
    assert.equal(second.text, "hello spiffe://example.org/client\n");
    assert.notEqual(
      second.serial,
      first.serial,
      "the new connection got the rotated SVID, without a restart",
    );
  });
});
