import { Command, Option } from "commander";
import { JwtBundle } from "../spiffe/bundle/jwtbundle.js";
import { JwtBundleSet } from "../spiffe/bundle/set.js";
import { SpiffeError } from "../spiffe/errors.js";
import { TrustDomain } from "../spiffe/id.js";
import { parseJwtSvidInsecure, validateJwtSvid } from "../spiffe/jwtsvid.js";
import { run, UsageError } from "./common.js";
import {
  collect,
  type Problem,
  parseAt,
  parseBundleOption,
  printReport,
  readInputFile,
} from "./inspect-common.js";

/** The token from the argument: a literal token, `@FILE`, or `-` for stdin. Never printed. */
function readToken(arg: string): string {
  if (arg === "-" || arg.startsWith("@"))
    return readInputFile(arg === "-" ? "-" : arg.slice(1), "token")
      .toString("utf8")
      .trim();
  return arg.trim();
}

function decodePart(part: string | undefined, what: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(Buffer.from(part ?? "", "base64url").toString("utf8"));
    if (typeof value === "object" && value !== null && !Array.isArray(value))
      return value as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new UsageError(
    `cannot read the token: its ${what} is not base64url JSON (a JWT-SVID is header.payload.signature)`,
  );
}

function time(value: unknown): string | undefined {
  return typeof value === "number" ? new Date(value * 1000).toISOString() : undefined;
}

export function jwtCommand(): Command {
  const inspect = new Command("inspect")
    .description("Inspect a JWT-SVID: header, subject, audience and times, and every check it fails.")
    .argument("<token>", "the token, @FILE to read it from a file, or - for stdin (it is never printed)")
    .option(
      "--audience <aud>",
      "an audience the token must be for; repeatable (without one, validation must refuse)",
      collect,
      [],
    )
    .option(
      "--bundle <td=file>",
      "JWT bundle (JWKS) of a trust domain; repeatable; verifies the signature",
      parseBundleOption,
      [],
    )
    .option("--at <time>", "validation time (ISO 8601), default now")
    .option("--leeway <seconds>", "allowed clock skew for exp and nbf", "0")
    .addOption(new Option("-o, --output <format>", "output format").choices(["txt", "json"]).default("txt"))
    .addHelpText(
      "after",
      `
Examples:
  $ tessera jwt inspect @token.jwt --audience spiffe://example.org/db --bundle example.org=jwks.json
  $ echo "$TOKEN" | tessera jwt inspect - --audience billing

Exit status: 0 when the token is a valid JWT-SVID for the audience (and its signature verifies,
when bundles are given), 1 when it fails a check (always without --audience), 2 when the token
or a bundle cannot be read.`,
    )
    .action(
      (
        tokenArg: string,
        opts: {
          audience: string[];
          bundle: Array<[string, string]>;
          at?: string;
          leeway: string;
          output: string;
        },
      ) =>
        run(async () => {
          const at = parseAt(opts.at);
          const leewaySeconds = Number(opts.leeway);
          if (!Number.isFinite(leewaySeconds) || leewaySeconds < 0)
            throw new UsageError(`--leeway ${opts.leeway}: expected seconds >= 0`);
          const token = readToken(tokenArg);
          const parts = token.split(".");
          if (parts.length !== 3)
            throw new UsageError(
              `cannot read the token: expected 3 dot-separated parts, found ${parts.length}`,
            );
          const header = decodePart(parts[0], "header");
          const claims = decodePart(parts[1], "payload");
          const bundles = new JwtBundleSet();
          for (const [td, file] of opts.bundle) {
            try {
              bundles.add(JwtBundle.parse(TrustDomain.parse(td), readInputFile(file, "bundle")));
            } catch (e) {
              if (e instanceof SpiffeError)
                throw new UsageError(`cannot read bundle ${td}=${file}: ${e.message}`);
              throw e;
            }
          }
          const problems: Problem[] = [];
          let signature: "verified" | "not checked" | "failed" = "not checked";
          if (opts.audience.length === 0) {
            problems.push({
              rule: "no-expected-audience",
              message:
                "no --audience given: a JWT-SVID validator with no audience must refuse every token (JWT-SVID.md Appendix A)",
            });
          } else {
            try {
              if (opts.bundle.length > 0) {
                await validateJwtSvid(token, bundles, opts.audience, { at, leewaySeconds });
                signature = "verified";
              } else {
                parseJwtSvidInsecure(token, opts.audience, { at, leewaySeconds });
              }
            } catch (e) {
              if (!(e instanceof SpiffeError)) throw e;
              if (opts.bundle.length > 0) signature = "failed";
              problems.push({ rule: (e as { reason?: string }).reason ?? e.code, message: e.message });
            }
          }
          const report = {
            header: { alg: header.alg, kid: header.kid, typ: header.typ },
            subject: claims.sub,
            audience: claims.aud,
            expires: time(claims.exp) ?? null,
            issuedAt: time(claims.iat) ?? null,
            notBefore: time(claims.nbf) ?? null,
            otherClaims: Object.keys(claims).filter((k) => !["sub", "aud", "exp", "iat", "nbf"].includes(k)),
            validatedAt: at.toISOString(),
            signature,
            valid: problems.length === 0,
            problems,
          };
          return printReport(opts.output, report, () => [
            `header:    alg=${String(header.alg)}${header.kid !== undefined ? ` kid=${String(header.kid)}` : ""}${header.typ !== undefined ? ` typ=${String(header.typ)}` : ""}`,
            `subject:   ${String(claims.sub ?? "(none)")}`,
            `audience:  ${Array.isArray(claims.aud) ? claims.aud.join(", ") : String(claims.aud ?? "(none)")}`,
            `expires:   ${report.expires ?? "(no exp)"}`,
            ...(report.issuedAt ? [`issued:    ${report.issuedAt}`] : []),
            ...(report.otherClaims.length ? [`claims:    ${report.otherClaims.join(", ")}`] : []),
            `signature: ${signature}${signature === "not checked" ? " (give --bundle TRUSTDOMAIN=FILE to verify)" : ""}`,
            problems.length === 0
              ? "result:    a valid JWT-SVID"
              : `result:    fails ${problems.length} check(s)`,
          ]);
        }),
    );
  return new Command("jwt").description("JWT-SVID tools").addCommand(inspect);
}
