import type { KeyObject, X509Certificate } from "node:crypto";
import { Command, Option } from "commander";
import { X509BundleSet } from "../spiffe/bundle/set.js";
import { X509Bundle } from "../spiffe/bundle/x509bundle.js";
import { SpiffeError } from "../spiffe/errors.js";
import { SpiffeId, TrustDomain } from "../spiffe/id.js";
import { parseCertificates, parsePrivateKey, verifyX509Svid, x509SvidProblems } from "../spiffe/x509svid.js";
import { run, UsageError } from "./common.js";
import { type Problem, parseAt, parseBundleOption, printReport, readInputFile } from "./inspect-common.js";
import { svidFetchCommand } from "./svid-fetch.js";

function keyDescription(key: KeyObject): string {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "ec") return `EC ${d.namedCurve ?? ""}`.trim();
  if (key.asymmetricKeyType === "rsa" || key.asymmetricKeyType === "rsa-pss") {
    return `${key.asymmetricKeyType.toUpperCase()} ${d.modulusLength ?? "?"} bits`;
  }
  return key.asymmetricKeyType ?? "unknown";
}

function uriSans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? "")
    .split(", ")
    .filter((s) => s.startsWith("URI:"))
    .map((s) => s.slice(4));
}

function problemOf(e: unknown): Problem {
  if (e instanceof SpiffeError)
    return { rule: (e as { reason?: string }).reason ?? e.code, message: e.message };
  throw e;
}

export function svidCommand(): Command {
  const inspect = new Command("inspect")
    .description(
      "Inspect an X.509-SVID chain (PEM or DER): SPIFFE ID, trust domain, validity, key type, and every X509-SVID rule it breaks.",
    )
    .argument("<chain>", "certificate chain, leaf first (PEM or DER); - for stdin")
    .option("--key <file>", "private key (PKCS#8, PEM or DER): check that it matches the leaf")
    .option(
      "--bundle <td=file>",
      "trust bundle of a trust domain (PEM or DER); repeatable; verifies the chain",
      parseBundleOption,
      [],
    )
    .option("--at <time>", "verification time (ISO 8601), default now")
    .option("--strict", "also check the MUST rules no SPIFFE SDK enforces (criticality, EKU)")
    .addOption(new Option("-o, --output <format>", "output format").choices(["txt", "json"]).default("txt"))
    .addHelpText(
      "after",
      `
Examples:
  $ tessera svid inspect svid.pem --key svid.key
  $ tessera svid inspect svid.der --bundle example.org=bundle.pem --at 2026-01-31T12:00:00Z

Exit status: 0 when the chain is a valid X.509-SVID (and verifies, and matches the key, when
asked), 1 when it breaks a rule, 2 when an input cannot be read. Keys are never printed.`,
    )
    .action(
      (
        chainPath: string,
        opts: {
          key?: string;
          bundle: Array<[string, string]>;
          at?: string;
          strict?: boolean;
          output: string;
        },
      ) =>
        run(() => {
          const at = parseAt(opts.at);
          let certs: X509Certificate[];
          try {
            certs = parseCertificates(readInputFile(chainPath, "chain"));
          } catch (e) {
            if (e instanceof SpiffeError)
              throw new UsageError(`cannot read chain ${chainPath}: ${e.message}`);
            throw e;
          }
          if (certs.length === 0)
            throw new UsageError(`cannot read chain ${chainPath}: no certificate in it`);
          // Several files for one trust domain add up to one bundle; domains never mix.
          const authorities = new Map<string, { td: TrustDomain; certs: X509Certificate[] }>();
          for (const [td, file] of opts.bundle) {
            let trustDomain: TrustDomain;
            try {
              trustDomain = TrustDomain.parse(td);
            } catch (e) {
              throw new UsageError(`--bundle ${td}=${file}: ${(e as Error).message}`);
            }
            try {
              const entry = authorities.get(trustDomain.name) ?? { td: trustDomain, certs: [] };
              entry.certs.push(...X509Bundle.parse(trustDomain, readInputFile(file, "bundle")).authorities);
              authorities.set(trustDomain.name, entry);
            } catch (e) {
              if (e instanceof SpiffeError) throw new UsageError(`cannot read bundle ${file}: ${e.message}`);
              throw e;
            }
          }
          const bundles = new X509BundleSet(
            [...authorities.values()].map((a) => X509Bundle.fromCertificates(a.td, a.certs)),
          );
          const problems: Problem[] = x509SvidProblems(certs, { strict: opts.strict === true }).map(
            problemOf,
          );
          let keyMatches: boolean | undefined;
          if (opts.key) {
            const keyBytes = readInputFile(opts.key, "key");
            try {
              const key = parsePrivateKey(keyBytes);
              keyMatches = (certs[0] as X509Certificate).checkPrivateKey(key);
              if (!keyMatches) {
                problems.push({
                  rule: "key-mismatch",
                  message: "the private key does not match the leaf certificate's public key",
                });
              }
            } catch (e) {
              problems.push(problemOf(e));
            }
          }
          let verified: string[] | undefined;
          if (opts.bundle.length > 0) {
            try {
              verified = verifyX509Svid(certs, bundles, { at, strict: opts.strict === true }).chain.map(
                (c) => c.subject,
              );
            } catch (e) {
              problems.push(problemOf(e));
            }
          }
          const leaf = certs[0] as X509Certificate;
          let id: string | undefined;
          try {
            id = String(SpiffeId.parse(uriSans(leaf)[0] ?? ""));
          } catch {
            id = undefined;
          }
          const report = {
            spiffeId: id ?? null,
            trustDomain: id ? SpiffeId.parse(id).trustDomain.name : null,
            notBefore: new Date(leaf.validFrom).toISOString(),
            notAfter: new Date(leaf.validTo).toISOString(),
            keyType: keyDescription(leaf.publicKey),
            chain: certs.map((c) => ({
              subject: c.subject.replaceAll("\n", ", "),
              issuer: c.issuer.replaceAll("\n", ", "),
              ca: c.ca,
              uriSans: uriSans(c),
            })),
            ...(keyMatches === undefined ? {} : { keyMatches }),
            ...(opts.bundle.length > 0
              ? { verifiedAt: at.toISOString(), verified: verified !== undefined }
              : {}),
            valid: problems.length === 0,
            problems,
          };
          return printReport(opts.output, report, () => {
            const lines = [
              `SPIFFE ID:    ${report.spiffeId ?? "(none)"}`,
              `trust domain: ${report.trustDomain ?? "(none)"}`,
              `valid:        ${report.notBefore} to ${report.notAfter}`,
              `key type:     ${report.keyType}`,
              `chain:        ${certs.length} certificate(s)`,
              ...report.chain.map(
                (c, i) => `  [${i}] ${c.subject || "(empty subject)"}${c.ca ? " (CA)" : ""}`,
              ),
            ];
            if (keyMatches !== undefined)
              lines.push(`key:          ${keyMatches ? "matches the leaf" : "does NOT match the leaf"}`);
            if (opts.bundle.length > 0)
              lines.push(`verified:     ${verified ? `yes, at ${report.verifiedAt}` : "no"}`);
            lines.push(
              problems.length === 0
                ? "result:       a valid X.509-SVID"
                : `result:       breaks ${problems.length} rule(s)`,
            );
            return lines;
          });
        }),
    );
  return new Command("svid")
    .description("X.509-SVID tools")
    .addCommand(inspect)
    .addCommand(svidFetchCommand());
}
