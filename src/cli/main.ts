#!/usr/bin/env node
import { Command } from "commander";
import { canCommand } from "./can.js";
import { connectivityCommand } from "./connectivity.js";
import { diffCommand } from "./diff.js";
import { jwtCommand } from "./jwt.js";
import { svidCommand } from "./svid.js";

const program = new Command("tessera")
  .description("Tessera: zero trust for workloads. Analyze who can talk to whom, and why.")
  .version("0.1.0")
  .showHelpAfterError()
  .addHelpText(
    "after",
    `
Examples:
  $ tessera connectivity examples/zero-trust-shop
  $ tessera can -f examples/zero-trust-shop shop/frontend shop/cart:7070
  $ tessera diff before/ after/ -o md
  $ tessera svid inspect svid.pem --key svid.key --bundle example.org=bundle.pem
  $ tessera jwt inspect @token.jwt --audience spiffe://example.org/db --bundle example.org=jwks.json`,
  );
program.addCommand(connectivityCommand());
program.addCommand(canCommand());
program.addCommand(diffCommand());
program.addCommand(svidCommand());
program.addCommand(jwtCommand());
program.exitOverride((err) => {
  // Usage errors (unknown option, missing argument) are bad input: exit 2.
  process.exit(err.exitCode === 0 ? 0 : 2);
});
await program.parseAsync(process.argv);
