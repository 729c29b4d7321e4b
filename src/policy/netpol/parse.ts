import { type Diagnostics, displayValue, InputError } from "../../kube/errors.js";
import { parseCidr } from "../../kube/ip.js";
import { objectName, type PolicyObject, type Protocol, parseProtocol } from "../../kube/objects.js";
import { parseSelector } from "../../kube/selector.js";
import * as iv from "../intervals.js";
import type { Direction, NetpolPeer, NetpolPort, NetpolRule, NetworkPolicy } from "./model.js";

type Obj = Record<string, unknown>;

const IANA_SVC_NAME = /^(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Validates a networking.k8s.io/v1 NetworkPolicy as the API server would, plus the checks
 * that make an analysis meaningful, and returns its model. Throws InputError with file:line.
 */
export function parseNetworkPolicy(obj: PolicyObject, diag: Diagnostics): NetworkPolicy {
  const object = objectName("NetworkPolicy", obj.namespace, obj.name);
  const fail = (code: string, message: string): never => {
    throw new InputError(code, message, obj.source, object);
  };
  if (obj.spec !== undefined && obj.spec !== null && !isObj(obj.spec))
    fail("invalid-spec", "spec must be a map");
  const spec = (obj.spec ?? {}) as Obj;
  const podSelector = parseSelector(spec.podSelector, "spec.podSelector", obj.source, object);

  const typesRaw = spec.policyTypes;
  let ingressIsolation: boolean;
  let egressIsolation: boolean;
  const egressList = spec.egress;
  if (typesRaw === undefined || typesRaw === null || (Array.isArray(typesRaw) && typesRaw.length === 0)) {
    // The API server's default: Ingress always, Egress when there are egress rules.
    ingressIsolation = true;
    egressIsolation = Array.isArray(egressList) && egressList.length > 0;
  } else {
    if (!Array.isArray(typesRaw)) return fail("invalid-policy-types", "spec.policyTypes must be a list");
    ingressIsolation = false;
    egressIsolation = false;
    for (const t of typesRaw as unknown[]) {
      if (t === "Ingress") ingressIsolation = true;
      else if (t === "Egress") egressIsolation = true;
      else fail("invalid-policy-types", `spec.policyTypes: "${displayValue(t)}" is not Ingress or Egress`);
    }
  }

  const rules = (direction: Direction): NetpolRule[] => {
    const raw = spec[direction];
    if (raw === undefined || raw === null) return [];
    if (!Array.isArray(raw)) return fail("invalid-rules", `spec.${direction} must be a list`);
    return (raw as unknown[]).map((r, index) => parseRule(r, direction, index, fail));
  };
  const ingress = rules("ingress");
  const egress = rules("egress");
  if (!ingressIsolation && ingress.length > 0) {
    diag.warn(
      "ingress-rules-ignored",
      "has ingress rules but policyTypes does not include Ingress: the rules have no effect",
      obj.source,
      object,
    );
  }
  if (!egressIsolation && egress.length > 0) {
    diag.warn(
      "egress-rules-ignored",
      "has egress rules but policyTypes does not include Egress: the rules have no effect",
      obj.source,
      object,
    );
  }
  for (const rule of [...ingress, ...egress]) {
    for (const peer of rule.peers ?? []) {
      if (peer.kind === "ipBlock" && peer.ipv6) {
        diag.warn(
          "ipv6-ignored",
          `ipBlock ${peer.cidr} is IPv6: the analysis covers IPv4 only, so this peer allows nothing here`,
          obj.source,
          object,
        );
      }
    }
  }
  return {
    ref: { kind: "NetworkPolicy", namespace: obj.namespace, name: obj.name, source: obj.source },
    podSelector,
    ingressIsolation,
    egressIsolation,
    ingress: ingressIsolation ? ingress : [],
    egress: egressIsolation ? egress : [],
  };

  function parseRule(
    raw: unknown,
    direction: Direction,
    index: number,
    fail: (c: string, m: string) => never,
  ): NetpolRule {
    const at = `spec.${direction}[${index}]`;
    if (!isObj(raw)) return fail("invalid-rule", `${at} must be a map`);
    const peersField = direction === "ingress" ? "from" : "to";
    const peersRaw = raw[peersField];
    let peers: NetpolPeer[] | undefined;
    if (peersRaw !== undefined && peersRaw !== null) {
      if (!Array.isArray(peersRaw)) return fail("invalid-rule", `${at}.${peersField} must be a list`);
      peers = (peersRaw as unknown[]).map((p, i) => parsePeer(p, `${at}.${peersField}[${i}]`));
    }
    const portsRaw = raw.ports;
    let ports: NetpolPort[] = [];
    if (portsRaw !== undefined && portsRaw !== null) {
      if (!Array.isArray(portsRaw)) return fail("invalid-rule", `${at}.ports must be a list`);
      ports = (portsRaw as unknown[]).map((p, i) => parsePort(p, `${at}.ports[${i}]`));
    }
    if (direction === "egress" && peers?.some((p) => p.kind === "ipBlock")) {
      const named = ports.find((p) => typeof p.port === "string");
      if (named) {
        fail(
          "named-port-to-ip",
          `named port error: cannot convert named port for an IP destination: ${at} allows port "${String(named.port)}" to an ipBlock; a named port is resolved against a destination pod's containers, so use a number for IP destinations`,
        );
      }
    }
    return { index, peers: peers && peers.length > 0 ? peers : undefined, ports };
  }

  function parsePeer(raw: unknown, at: string): NetpolPeer {
    if (!isObj(raw)) return fail("invalid-peer", `${at} must be a map`);
    const has = (k: string) => raw[k] !== undefined && raw[k] !== null;
    if (has("ipBlock")) {
      if (has("podSelector") || has("namespaceSelector")) {
        fail(
          "invalid-peer",
          `rule NetworkPolicyPeer error: cannot have both IPBlock and PodSelector/NamespaceSelector set (${at}); write them as separate peers`,
        );
      }
      return parseIpBlock(raw.ipBlock, `${at}.ipBlock`);
    }
    if (!has("podSelector") && !has("namespaceSelector")) {
      fail(
        "invalid-peer",
        `rule NetworkPolicyPeer error: cannot have empty rule peer (${at}); set podSelector, namespaceSelector or ipBlock (an empty "from"/"to" list allows every peer)`,
      );
    }
    return {
      kind: "pods",
      namespaceSelector: has("namespaceSelector")
        ? parseSelector(raw.namespaceSelector, `${at}.namespaceSelector`, obj.source, object)
        : undefined,
      podSelector: has("podSelector")
        ? parseSelector(raw.podSelector, `${at}.podSelector`, obj.source, object)
        : undefined,
    };
  }

  function parseIpBlock(raw: unknown, at: string): NetpolPeer {
    if (!isObj(raw)) return fail("invalid-cidr", `${at} must be a map`);
    const cidrText = raw.cidr;
    const cidr = typeof cidrText === "string" ? parseCidr(cidrText) : undefined;
    if (!cidr) {
      return fail(
        "invalid-cidr",
        `CIDR error: invalid CIDR address: ${at}.cidr "${displayValue(cidrText)}" (expected like 10.0.0.0/8)`,
      );
    }
    const exceptRaw = raw.except ?? [];
    if (!Array.isArray(exceptRaw)) return fail("invalid-cidr", `${at}.except must be a list`);
    const except: string[] = [];
    let ipv4: iv.Intervals = cidr.family === 4 ? [cidr.start, cidr.end] : iv.EMPTY;
    (exceptRaw as unknown[]).forEach((e, i) => {
      const ex = typeof e === "string" ? parseCidr(e) : undefined;
      if (!ex)
        fail("invalid-cidr", `CIDR error: invalid CIDR address: ${at}.except[${i}] "${displayValue(e)}"`);
      const exc = ex as NonNullable<typeof ex>;
      if (exc.family !== cidr.family) {
        fail(
          "invalid-cidr",
          `${at}.except[${i}] "${exc.text}" is not in the same IP family as cidr ${cidr.text}`,
        );
      }
      if (exc.family === 4 && cidr.family === 4) {
        if (
          exc.start < cidr.start ||
          exc.end > cidr.end ||
          (exc.start === cidr.start && exc.end === cidr.end)
        ) {
          fail(
            "except-outside-cidr",
            `${at}.except[${i}] "${exc.text}" must be a strict subset of cidr ${cidr.text}`,
          );
        }
        ipv4 = iv.subtract(ipv4, [exc.start, exc.end]);
      }
      except.push(exc.text);
    });
    return { kind: "ipBlock", cidr: cidr.text, except, ipv4, ipv6: cidr.family === 6 };
  }

  function parsePort(raw: unknown, at: string): NetpolPort {
    if (!isObj(raw)) return fail("invalid-port", `${at} must be a map`);
    const protocol: Protocol | undefined = parseProtocol(raw.protocol);
    if (!protocol)
      return fail(
        "invalid-protocol",
        `${at}.protocol: "${displayValue(raw.protocol)}" is not TCP, UDP or SCTP`,
      );
    let port: number | string | undefined;
    const p = raw.port;
    if (p !== undefined && p !== null) {
      if (typeof p === "string" && !/^\d+$/.test(p)) {
        if (p.length > 15 || !IANA_SVC_NAME.test(p)) {
          fail(
            "invalid-port",
            `${at}.port: "${p}" is not a valid port name (1-15 lowercase letters, digits and '-', with at least one letter)`,
          );
        }
        port = p;
      } else {
        if (typeof p !== "number" && typeof p !== "string") {
          // Number(true) is 1 and Number({toString: 1}) throws: only numbers and names are ports.
          fail(
            "invalid-port",
            `${at}.port: ${displayValue(p)} must be a port number (1-65535) or a port name`,
          );
        }
        const n = Number(p);
        if (!Number.isInteger(n) || n < 1 || n > 65535)
          fail("invalid-port", `${at}.port: ${displayValue(p)} is out of range 1-65535`);
        port = n;
      }
    }
    let endPort: number | undefined;
    const e = raw.endPort;
    if (e !== undefined && e !== null) {
      if (typeof port === "string") {
        fail(
          "named-port-with-end-port",
          `${at}: endPort field cannot be defined if the port field is defined as a named (string) port`,
        );
      }
      if (port === undefined) fail("invalid-port", `${at}: endPort may not be set without port`);
      const n = typeof e === "number" || (typeof e === "string" && /^\d+$/.test(e)) ? Number(e) : Number.NaN;
      if (!Number.isInteger(n) || n < 1 || n > 65535 || n < (port as number)) {
        fail(
          "invalid-port-range",
          `${at}: port range ${String(port)}-${displayValue(e)} is illegal; start and end values of the port range should be in 1-65535 and end may not be less than start`,
        );
      }
      endPort = n;
    }
    return { protocol, port, endPort };
  }
}
