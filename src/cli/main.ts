#!/usr/bin/env node
import { Command } from "commander";
import { agentCommand, bundleCommand, caCommand, entryCommand, tokenCommand } from "./admin.js";
import { agentRunCommand } from "./agent-run.js";
import { canCommand } from "./can.js";
import { connectivityCommand } from "./connectivity.js";
import { curlCommand } from "./curl.js";
import { diffCommand } from "./diff.js";
import { healthcheckCommand } from "./healthcheck.js";
import { httpbinCommand } from "./httpbin.js";
import { jwtCommand } from "./jwt.js";
import { meshCommands } from "./mesh.js";
import { proxyCommand } from "./proxy.js";
import { serverCommand } from "./server.js";
import { svidCommand } from "./svid.js";

const program = new Command("tessera")
  .description(
    "Tessera: zero trust for workloads. Analyze who can talk to whom and why, and issue SPIFFE identities.",
  )
  .version("0.1.0")
  .showHelpAfterError()
  .addHelpText(
    "after",
    `
Examples:
  $ sudo tessera lab                       # the zero-trust lab, live, in a local mesh
  $ tessera connectivity examples/zero-trust-shop
  $ tessera can -f examples/zero-trust-shop shop/frontend shop/cart:7070
  $ tessera diff before/ after/ -o md
  $ tessera svid inspect svid.pem --key svid.key --bundle example.org=bundle.pem
  $ tessera jwt inspect @token.jwt --audience spiffe://example.org/db --bundle example.org=jwks.json
  $ tessera server run --data-dir /tmp/td/server --trust-domain example.org
  $ tessera agent run --data-dir /tmp/td/agent --server 127.0.0.1:8081 --join-token TOKEN --trust-bundle bundle.pem
  $ tessera proxy run --workload default/httpbin -f lab/ --inbound 80@0.0.0.0:15006=127.0.0.1:8080`,
  );
program.addCommand(connectivityCommand());
program.addCommand(canCommand());
program.addCommand(diffCommand());
program.addCommand(svidCommand());
program.addCommand(jwtCommand());
program.addCommand(serverCommand());
program.addCommand(tokenCommand());
program.addCommand(entryCommand());
// `agent run` (src/cli/agent-run.ts) joins the admin subcommands (list, show, ban, delete).
program.addCommand(agentCommand().addCommand(agentRunCommand()));
program.addCommand(healthcheckCommand());
program.addCommand(bundleCommand());
program.addCommand(caCommand());
program.addCommand(proxyCommand());
program.addCommand(httpbinCommand());
program.addCommand(curlCommand());
for (const c of meshCommands()) program.addCommand(c);
program.exitOverride((err) => {
  // Usage errors (unknown option, missing argument) are bad input: exit 2.
  process.exit(err.exitCode === 0 ? 0 : 2);
});
await program.parseAsync(process.argv);
