import assert from "node:assert/strict";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type tls from "node:tls";
import {
  AuthorizationError,
  authorizeAny,
  authorizeId,
  authorizeIf,
  authorizeMemberOf,
  authorizeOneOf,
} from "../../src/spiffe/authorizer.js";
import { X509Bundle } from "../../src/spiffe/bundle/x509bundle.js";
import { SpiffeId, TrustDomain } from "../../src/spiffe/id.js";
import { connectSpiffeTls, createSpiffeTlsServer, type SpiffeTlsSocket } from "../../src/spiffe/tls.js";
import { ManualSource, toSvid } from "./manual-source.js";
import { TestCa } from "./testca.js";

async function listen(server: tls.Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

/** Echoes one line and reports who the peer was. */
function echo(socket: SpiffeTlsSocket): void {
  socket.once("data", (d) => socket.end(`${socket.peerId} said ${d}`));
}

async function request(socket: tls.TLSSocket, text: string): Promise<string> {
  socket.write(text);
  let out = "";
  socket.setEncoding("utf8");
  for await (const chunk of socket) out += chunk;
  return out;
}

describe("mTLS with X.509-SVIDs", () => {
  let ca: TestCa;
  let partner: TestCa;
  let bundles: X509Bundle[];
  let server: ManualSource;
  let client: ManualSource;
  const serverId = "spiffe://example.org/server";
  const clientId = "spiffe://example.org/client";
  const servers: tls.Server[] = [];

  before(async () => {
    ca = await TestCa.create("example.org");
    partner = await TestCa.create("partner.org");
    bundles = [
      X509Bundle.fromCertificates(TrustDomain.parse("example.org"), ca.authorities),
      X509Bundle.fromCertificates(TrustDomain.parse("partner.org"), partner.authorities),
    ];
    server = new ManualSource(toSvid(await ca.issueSvid(serverId)), bundles);
    client = new ManualSource(toSvid(await ca.issueSvid(clientId)), bundles);
  });
  after(() => {
    for (const s of servers) s.close();
  });

  const start = async (authorizer = authorizeAny(), source: ManualSource = server) => {
    const s = createSpiffeTlsServer(source, authorizer, echo);
    servers.push(s);
    return { server: s, port: await listen(s) };
  };

  it("authenticates both sides and hands over the peer's SPIFFE ID", async () => {
    const { port } = await start(authorizeId(SpiffeId.parse(clientId)));
    const socket = await connectSpiffeTls(client, authorizeId(SpiffeId.parse(serverId)), {
      host: "127.0.0.1",
      port,
    });
    assert.equal(String(socket.peerId), serverId);
    assert.equal(await request(socket, "hello"), `${clientId} said hello`);
  });

  it("refuses a server that fails the client's authorizer, naming the rule", async () => {
    const { port } = await start();
    await assert.rejects(
      connectSpiffeTls(client, authorizeId(SpiffeId.parse("spiffe://example.org/other")), {
        host: "127.0.0.1",
        port,
      }),
      (e: unknown) => e instanceof AuthorizationError && /exact ID/.test(e.message) && e.rule === "exact-id",
    );
  });

  it("refuses a client that fails the server's authorizer before it sees any data", async () => {
    const { server: s, port } = await start(authorizeMemberOf(TrustDomain.parse("partner.org")));
    const refused = once(s, "spiffeError");
    const socket = await connectSpiffeTls(client, authorizeAny(), { host: "127.0.0.1", port });
    socket.on("error", () => {});
    const [error] = (await refused) as [Error];
    assert.ok(error instanceof AuthorizationError);
    assert.match(error.message, /not a member of trust domain partner\.org/);
    // The server never echoed: the application handler did not run.
    assert.equal(await request(socket, "hello").catch(() => ""), "");
  });

  it("checks the anchor per trust domain: another domain's root does not vouch for example.org", async () => {
    // partner.org's CA signs an SVID that claims an example.org identity. Node's single `ca`
    // store holds both roots and would accept it; the SPIFFE check must not.
    const forged = toSvid(await partner.issueSvid("spiffe://example.org/client"));
    const { server: s, port } = await start();
    const refused = once(s, "spiffeError");
    const socket = await connectSpiffeTls(new ManualSource(forged, bundles), authorizeAny(), {
      host: "127.0.0.1",
      port,
    });
    socket.on("error", () => {});
    const [error] = (await refused) as [Error & { reason?: string }];
    assert.equal(error.name, "X509SvidError");
    assert.ok(
      ["unknown-authority", "verify-failed", "signature-invalid"].includes(error.reason ?? ""),
      error.message,
    );
  });

  it("follows rotation without restarting, also for clients that send no SNI", async () => {
    const source = new ManualSource(toSvid(await ca.issueSvid(serverId)), bundles);
    const { port } = await start(authorizeAny(), source);
    const first = await connectSpiffeTls(client, authorizeAny(), { host: "127.0.0.1", port });
    const firstSerial = first.getPeerX509Certificate()?.serialNumber;
    first.destroy();
    const rotated = toSvid(await ca.issueSvid(serverId));
    source.rotate(rotated);
    const second = await connectSpiffeTls(client, authorizeAny(), { host: "127.0.0.1", port });
    assert.equal(second.servername, false, "dialing an IP sends no SNI");
    assert.equal(second.getPeerX509Certificate()?.serialNumber, rotated.leaf.serialNumber);
    assert.notEqual(second.getPeerX509Certificate()?.serialNumber, firstSerial);
    second.destroy();
  });

  it("refuses an expired SVID at the given time", async () => {
    const { port } = await start();
    const later = () => new Date(Date.now() + 10 * 365 * 24 * 3600 * 1000);
    await assert.rejects(
      connectSpiffeTls(client, authorizeAny(), { host: "127.0.0.1", port, now: later }),
      (e: unknown) =>
        e instanceof Error &&
        e.name === "X509SvidError" &&
        /expired/.test((e as { reason?: string }).reason ?? ""),
    );
  });

  it("authorizers say which rule refused", () => {
    const peer = SpiffeId.parse("spiffe://example.org/a");
    assert.doesNotThrow(() => authorizeOneOf([peer, SpiffeId.parse("spiffe://example.org/b")])(peer, []));
    assert.throws(() => authorizeOneOf([SpiffeId.parse("spiffe://example.org/b")])(peer, []), /one of a set/);
    assert.throws(() => authorizeIf("the no-a rule", (id) => id.path !== "/a")(peer, []), /the no-a rule/);
    assert.doesNotThrow(() => authorizeMemberOf(TrustDomain.parse("example.org"))(peer, []));
  });
});
