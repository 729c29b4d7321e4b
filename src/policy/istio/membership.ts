import type { Namespace, Pod } from "../../kube/objects.js";

/**
 * Whether Istio's injector gives a pod a sidecar. The pod's `sidecar.istio.io/inject` label
 * (or the older annotation) decides when set; otherwise the namespace does: label
 * `istio-injection=enabled`, or a revision label `istio.io/rev`. `istio-injection=disabled`
 * on the namespace wins over everything, as the injector's webhooks select it out.
 */
export function sidecarInjected(pod: Pod, namespace: Namespace | undefined): boolean {
  const nsLabels = namespace?.labels ?? {};
  if (nsLabels["istio-injection"] === "disabled") return false;
  const podSetting = pod.labels["sidecar.istio.io/inject"] ?? pod.annotations["sidecar.istio.io/inject"];
  if (podSetting === "false") return false;
  if (podSetting === "true") return true;
  return nsLabels["istio-injection"] === "enabled" || nsLabels["istio.io/rev"] !== undefined;
}
