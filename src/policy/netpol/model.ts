import type { SourceRef } from "../../kube/errors.js";
import type { Protocol } from "../../kube/objects.js";
import type { LabelSelector } from "../../kube/selector.js";
import type { Intervals } from "../intervals.js";

/** A NetworkPolicy rule peer: pods chosen by selectors, or an IP block. */
export type NetpolPeer =
  | {
      readonly kind: "pods";
      /** Undefined: the policy's own namespace. */
      readonly namespaceSelector: LabelSelector | undefined;
      /** Undefined: every pod of the selected namespaces. */
      readonly podSelector: LabelSelector | undefined;
    }
  | {
      readonly kind: "ipBlock";
      readonly cidr: string;
      readonly except: readonly string[];
      /** IPv4 addresses in cidr and not in any except. */
      readonly ipv4: Intervals;
      readonly ipv6: boolean;
    };

export interface NetpolPort {
  readonly protocol: Protocol;
  /** Undefined: every port of the protocol. */
  readonly port: number | string | undefined;
  readonly endPort: number | undefined;
}

export interface NetpolRule {
  /** Position in the policy's ingress or egress list, from 0. */
  readonly index: number;
  /** Undefined or empty: every peer. */
  readonly peers: readonly NetpolPeer[] | undefined;
  /** Empty: every port and protocol. */
  readonly ports: readonly NetpolPort[];
}

export interface PolicyRef {
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly source: SourceRef;
}

export interface NetworkPolicy {
  readonly ref: PolicyRef;
  readonly podSelector: LabelSelector;
  /** Whether the policy isolates its pods for ingress / egress (policyTypes with defaults). */
  readonly ingressIsolation: boolean;
  readonly egressIsolation: boolean;
  readonly ingress: readonly NetpolRule[];
  readonly egress: readonly NetpolRule[];
}

export type Direction = "ingress" | "egress";
