/**
 * The compiled NetworkPolicy layer (classes, bitsets, interval sets) against the slow
 * ReferenceNetpol, on small random clusters: single flows, whole connection sets per pod
 * pair, workload connectivity, and the decision trace.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { clusterFromObjects } from "../../../src/kube/index.js";
import type { Cluster, Pod } from "../../../src/kube/objects.js";
import { connectivity, type Peer } from "../../../src/policy/connectivity.js";
import { compile } from "../../../src/policy/engine.js";
import { describeEndpoint, type Endpoint, type Flow, type TraceStep } from "../../../src/policy/model.js";
import type { Direction, NetworkPolicy, PolicyRef } from "../../../src/policy/netpol/model.js";
import { ReferenceNetpol } from "../../../src/policy/netpol/reference.js";
import {
  clusterObjectsArb,
  type FlowSpec,
  flowSpecArb,
  type KubeObjects,
  OUTSIDE_IPS,
  POD_IP_NUMBERS,
} from "./arbitraries.js";

const NUM_RUNS = Number(process.env.TESSERA_FC_RUNS ?? 200);
const params = { numRuns: NUM_RUNS, includeErrorInReport: true } as const;

function build(objects: KubeObjects) {
  const { cluster, diagnostics } = clusterFromObjects(objects);
  const { engine, netpol, networkPolicies } = compile(cluster, diagnostics);
  const reference = new ReferenceNetpol(cluster, networkPolicies);
  return { cluster, engine, netpol, networkPolicies, reference };
}

const podEndpoint = (pod: Pod): Endpoint => ({ kind: "pod", pod });
const ipEndpoint = (ip: number): Endpoint => ({ kind: "ip", ip });

function resolveFlow(cluster: Cluster, f: FlowSpec): Flow {
  const pods = cluster.pods;
  const pod = (i: number) => podEndpoint(pods[i % pods.length] as Pod);
  const src = f.shape === "ip-pod" ? ipEndpoint(f.ip) : pod(f.src);
  const dst = f.shape === "pod-ip" ? ipEndpoint(f.ip) : pod(f.dst);
  const ports = dst.kind === "pod" ? dst.pod.ports : [];
  const target = f.dstPort === undefined ? undefined : ports[f.dstPort % Math.max(1, ports.length)];
  if (target) return { src, dst, protocol: target.protocol, port: target.port };
  return { src, dst, protocol: f.protocol, port: f.port };
}

function describeFlow(flow: Flow): string {
  return `${describeEndpoint(flow.src)} -> ${describeEndpoint(flow.dst)} ${flow.protocol} ${flow.port}`;
}

const refName = (p: PolicyRef) => `${p.namespace}/${p.name}`;

function showTrace(trace: readonly TraceStep[]): string {
  return trace
    .map(
      (s) =>
        `  ${s.direction}: ${s.allowed ? "allow" : "deny"} ${s.policy ? `${refName(s.policy)} rule ${s.rule}` : (s.default ?? "")}`,
    )
    .join("\n");
}

/** Policies that select `pod` and isolate it for `direction` (straight from the parsed policies). */
function isolating(policies: readonly NetworkPolicy[], pod: Pod, direction: Direction): NetworkPolicy[] {
  return policies.filter(
    (p) =>
      p.ref.namespace === pod.namespace &&
      p.podSelector.matches(pod.labels) &&
      (direction === "ingress" ? p.ingressIsolation : p.egressIsolation),
  );
}

describe("NetpolLayer agrees with ReferenceNetpol", () => {
  it("(a) decides single flows alike", () => {
    fc.assert(
      fc.property(
        clusterObjectsArb(),
        fc.array(flowSpecArb, { minLength: 1, maxLength: 25 }),
        (objects, specs) => {
          const { cluster, engine, reference } = build(objects);
          for (const spec of specs) {
            const flow = resolveFlow(cluster, spec);
            const fast = engine.decide(flow);
            const slow = reference.decide(flow);
            assert.equal(
              fast.allowed,
              slow,
              `${describeFlow(flow)}: engine says ${fast.allowed ? "allow" : "deny"}, reference says ${slow ? "allow" : "deny"}\nengine trace:\n${showTrace(fast.trace)}`,
            );
          }
        },
      ),
      params,
    );
  });

  it("(b) computes the same connection set for every pair of pods (and pod/IP pairs)", () => {
    const ips = [...POD_IP_NUMBERS, ...OUTSIDE_IPS];
    fc.assert(
      fc.property(clusterObjectsArb(), (objects) => {
        const { cluster, engine, reference } = build(objects);
        const check = (src: Endpoint, dst: Endpoint) => {
          const fast = engine.allowed(src, dst);
          const slow = reference.allowed(src, dst);
          assert.ok(
            fast.equals(slow),
            `${describeEndpoint(src)} -> ${describeEndpoint(dst)}: engine "${fast}", reference "${slow}"`,
          );
        };
        for (const a of cluster.pods) {
          for (const b of cluster.pods) if (a !== b) check(podEndpoint(a), podEndpoint(b));
          for (const ip of ips) {
            check(podEndpoint(a), ipEndpoint(ip));
            check(ipEndpoint(ip), podEndpoint(a));
          }
        }
      }),
      params,
    );
  });

  it("(c) workload connectivity matches a brute force over the reference", () => {
    const endpointsOf = (p: Peer): Endpoint[] =>
      p.kind === "workload" ? p.pods.map(podEndpoint) : [ipEndpoint(p.start), ipEndpoint(p.end)];
    fc.assert(
      fc.property(clusterObjectsArb(), (objects) => {
        const { cluster, engine, reference } = build(objects);
        const result = connectivity(cluster, engine, { includeDenied: true, splitExternal: true });
        const workloads = result.peers.filter((p) => p.kind === "workload");
        const externals = result.peers.filter((p) => p.kind === "external");

        // Workload peers split the pods, without loss or overlap.
        const covered = workloads.flatMap((p) => (p.kind === "workload" ? p.pods : []));
        assert.equal(covered.length, cluster.pods.length, "workload peers cover every pod once");
        assert.equal(new Set(covered).size, cluster.pods.length, "workload peers cover every pod once");
        // External ranges tile the IPv4 space.
        let next = 0;
        for (const e of externals) {
          assert.ok(
            e.kind === "external" && e.start === next && e.end >= e.start,
            `external ranges tile: ${e.id}`,
          );
          next = e.end + 1;
        }
        assert.equal(next, 2 ** 32, "external ranges reach 255.255.255.255");

        // Every ordered pair of peers appears once (includeDenied), with what the reference allows
        // between every pod (or range end) of one and every pod (or range end) of the other.
        const W = workloads.length;
        assert.equal(
          result.connections.length,
          W * (W - 1) + 2 * W * externals.length,
          "one connection per pair",
        );
        const seen = new Set<string>();
        const index = new Map(result.peers.map((p, i) => [p, i]));
        for (const c of result.connections) {
          const key = `${c.src.id} => ${c.dst.id}`;
          const pair = `${index.get(c.src)} ${index.get(c.dst)}`;
          assert.ok(c.src !== c.dst && !seen.has(pair), `pair listed twice: ${key}`);
          seen.add(pair);
          for (const s of endpointsOf(c.src)) {
            for (const d of endpointsOf(c.dst)) {
              const slow = reference.allowed(s, d);
              assert.ok(
                c.conn.equals(slow),
                `${key} : ${c.conn}, but reference allows ${describeEndpoint(s)} -> ${describeEndpoint(d)} : ${slow}`,
              );
            }
          }
        }

        // The joined form (adjacent external ranges merged) says the same as the split form.
        // Joining groups connections by peer id, so it is only meaningful when ids are unique
        // (which "(c2) workload peers have distinct ids" checks on its own).
        const ids = result.peers.map((p) => p.id);
        if (new Set(ids).size !== ids.length) return;
        const joined = connectivity(cluster, engine, { includeDenied: true });
        const workloadIndex = (p: Peer) =>
          workloads.findIndex(
            (q) => q.kind === "workload" && p.kind === "workload" && q.pods[0] === p.pods[0],
          );
        const externalFacts = (conns: typeof result.connections) =>
          conns.flatMap((c) => {
            if (c.src.kind === "external") return [{ key: `in ${workloadIndex(c.dst)}`, range: c.src, c }];
            if (c.dst.kind === "external") return [{ key: `out ${workloadIndex(c.src)}`, range: c.dst, c }];
            return [];
          });
        const joinedFacts = externalFacts(joined.connections);
        for (const f of externalFacts(result.connections)) {
          const covers = joinedFacts.filter(
            (j) => j.key === f.key && j.range.start <= f.range.start && f.range.end <= j.range.end,
          );
          const what = `${f.c.src.id} => ${f.c.dst.id} : ${f.c.conn}`;
          assert.equal(covers.length, 1, `the joined form has one range covering ${what}`);
          assert.ok(
            covers[0]?.c.conn.equals(f.c.conn),
            `the joined form keeps ${what}, not ${covers[0]?.c.conn}`,
          );
        }
      }),
      params,
    );
  });

  // Classes of one workload's pods may differ by something other than labels (pod IP inside or
  // outside an ipBlock, different named container ports): the split groups still need distinct ids.
  it("(c2) workload peers have distinct ids", () => {
    fc.assert(
      fc.property(clusterObjectsArb(), (objects) => {
        const { cluster, engine } = build(objects);
        const ids = connectivity(cluster, engine).peers.map((p) => p.id);
        const dup = ids.find((id, i) => ids.indexOf(id) !== i);
        assert.equal(dup, undefined, `peer id ${dup} names more than one peer (peers: ${ids.join(" ")})`);
      }),
      params,
    );
  });

  it("(d) the decision trace names existing policies and rules that allow the flow", () => {
    fc.assert(
      fc.property(
        clusterObjectsArb(),
        fc.array(flowSpecArb, { minLength: 1, maxLength: 25 }),
        (objects, specs) => {
          const { cluster, engine, networkPolicies } = build(objects);
          for (const spec of specs) {
            const flow = resolveFlow(cluster, spec);
            const verdict = engine.decide(flow);
            const where = `${describeFlow(flow)} (${verdict.allowed ? "allowed" : "denied"})\ntrace:\n${showTrace(verdict.trace)}`;
            assert.equal(
              verdict.allowed,
              verdict.trace.every((s) => s.allowed),
              `verdict is the AND of its steps: ${where}`,
            );
            if (!verdict.allowed) {
              assert.ok(
                verdict.trace.some((s) => !s.allowed),
                `a denial has a denying step: ${where}`,
              );
            }

            // One step per pod end: egress at a pod source, ingress at a pod destination.
            const expected: Direction[] = [];
            if (flow.src.kind === "pod") expected.push("egress");
            if (flow.dst.kind === "pod") expected.push("ingress");
            assert.deepEqual(
              verdict.trace.map((s) => s.direction),
              expected,
              `trace steps: ${where}`,
            );

            for (const step of verdict.trace) {
              const selfEnd = step.direction === "egress" ? flow.src : flow.dst;
              assert.ok(selfEnd.kind === "pod", `a ${step.direction} step needs a pod at that end: ${where}`);
              const self = selfEnd.pod;
              const isolators = isolating(networkPolicies, self, step.direction);
              if (step.policy !== undefined) {
                const ref = step.policy;
                assert.ok(step.allowed, `a step naming a policy allows: ${where}`);
                const policy = networkPolicies.find(
                  (p) => p.ref.namespace === ref.namespace && p.ref.name === ref.name,
                );
                assert.ok(policy, `policy ${refName(ref)} exists: ${where}`);
                const rules = policy[step.direction];
                assert.ok(
                  step.rule !== undefined &&
                    Number.isInteger(step.rule) &&
                    step.rule >= 0 &&
                    step.rule < rules.length,
                  `rule ${step.rule} is inside ${refName(ref)}.${step.direction} (${rules.length} rules): ${where}`,
                );
                assert.ok(
                  isolators.includes(policy),
                  `${refName(ref)} selects ${self.namespace}/${self.name} for ${step.direction}: ${where}`,
                );
                // The named rule alone lets the flow pass on this side.
                const rule = rules[step.rule] as (typeof rules)[number];
                const only: NetworkPolicy = {
                  ...policy,
                  ingressIsolation: step.direction === "ingress",
                  egressIsolation: step.direction === "egress",
                  ingress: step.direction === "ingress" ? [rule] : [],
                  egress: step.direction === "egress" ? [rule] : [],
                };
                assert.ok(
                  new ReferenceNetpol(cluster, [only]).decide(flow),
                  `${refName(ref)} ${step.direction} rule ${step.rule} alone allows the flow: ${where}`,
                );
              } else if (step.allowed) {
                assert.deepEqual(
                  isolators.map((p) => refName(p.ref)),
                  [],
                  `a default allow means no policy isolates ${self.namespace}/${self.name} for ${step.direction}: ${where}`,
                );
              } else {
                assert.ok(isolators.length > 0, `a default deny means some policy isolates: ${where}`);
                assert.deepEqual(
                  [...(step.isolatedBy ?? [])].map(refName).sort(),
                  isolators.map((p) => refName(p.ref)).sort(),
                  `isolatedBy lists the isolating policies: ${where}`,
                );
              }
            }
          }
        },
      ),
      params,
    );
  });

  it("(e) agrees on larger clusters (more than 32 pod classes: multi-word bitsets)", () => {
    fc.assert(
      fc.property(
        clusterObjectsArb({ minUnits: 30, maxUnits: 45, maxPolicies: 8 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 50, maxLength: 50 }),
        fc.array(flowSpecArb, { minLength: 50, maxLength: 50 }),
        (objects, pairs, specs) => {
          const { cluster, engine, reference } = build(objects);
          const pods = cluster.pods;
          for (const [i, j] of pairs) {
            const src = podEndpoint(pods[i % pods.length] as Pod);
            const dst = podEndpoint(pods[j % pods.length] as Pod);
            const fast = engine.allowed(src, dst);
            const slow = reference.allowed(src, dst);
            assert.ok(
              fast.equals(slow),
              `${describeEndpoint(src)} -> ${describeEndpoint(dst)}: engine "${fast}", reference "${slow}"`,
            );
          }
          for (const spec of specs) {
            const flow = resolveFlow(cluster, spec);
            const fast = engine.decide(flow);
            assert.equal(
              fast.allowed,
              reference.decide(flow),
              `${describeFlow(flow)}\n${showTrace(fast.trace)}`,
            );
          }
        },
      ),
      { ...params, numRuns: Math.max(1, Math.round(NUM_RUNS / 4)) },
    );
  });
});
