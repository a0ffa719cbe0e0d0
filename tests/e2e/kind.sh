#!/usr/bin/env bash
# End-to-end check of the Helm chart on a real, disposable cluster (kind or k3d).
#
# Skipped (exit 0) unless SPIN_OPERATOR_E2E_KUBECONFIG points at the cluster's kubeconfig.
# It installs cert-manager if missing, installs the chart from this checkout, checks the
# webhooks admit examples/ and reject examples/invalid/, and waits for the operator to create
# a Deployment for every SpinApp whose executor creates one.
#
# Environment:
#   SPIN_OPERATOR_E2E_KUBECONFIG   kubeconfig of the test cluster (required to run)
#   SPIN_OPERATOR_E2E_IMAGE        operator image as repo:tag (default: the chart's default);
#                                  build it with `docker build -t IMAGE .` and load it into
#                                  the cluster (`kind load docker-image IMAGE`,
#                                  `k3d image import IMAGE`) beforehand
#   SPIN_OPERATOR_E2E_CERTS        cert-manager (default) | self-signed
#   SPIN_OPERATOR_E2E_SAMPLES      extra directory of SpinApp/SpinAppExecutor manifests to
#                                  apply as well (e.g. the upstream samples)
#   SPIN_OPERATOR_E2E_WAIT_READY   1: also wait for the app Deployments to become Available
#                                  (needs nodes with containerd-shim-spin and a
#                                  wasmtime-spin-v2 RuntimeClass)
#   SPIN_OPERATOR_E2E_KEEP         1: leave the release and test namespace in place
#   CERT_MANAGER_VERSION           cert-manager chart version to install (default v1.19.1)
# Needs kubectl and helm (v3.8+ or v4) on PATH.
set -euo pipefail

if [[ -z "${SPIN_OPERATOR_E2E_KUBECONFIG:-}" ]]; then
    echo "skipped: set SPIN_OPERATOR_E2E_KUBECONFIG to the kubeconfig of a disposable kind/k3d cluster to run the end-to-end test"
    exit 0
fi

cd "$(dirname "$0")/../.."
export KUBECONFIG="$SPIN_OPERATOR_E2E_KUBECONFIG"

RELEASE=spin-operator
NAMESPACE=spin-operator
APPS_NS=spin-e2e
CERTS="${SPIN_OPERATOR_E2E_CERTS:-cert-manager}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.19.1}"
TIMEOUT=180s

log() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

for tool in kubectl helm; do
    command -v "$tool" >/dev/null || fail "$tool is not on PATH"
done
kubectl version >/dev/null || fail "cannot reach the cluster in $KUBECONFIG"

dump() {
    echo "---- diagnostics" >&2
    kubectl -n "$NAMESPACE" get pods,endpointslices,certificates -o wide >&2 || true
    kubectl -n "$NAMESPACE" logs -l app.kubernetes.io/name=spin-operator --tail=50 --prefix >&2 || true
    kubectl -n "$APPS_NS" get spinapps,spinappexecutors,deployments,services >&2 || true
}
cleanup() {
    local rc=$?
    [[ $rc -ne 0 ]] && dump
    if [[ "${SPIN_OPERATOR_E2E_KEEP:-0}" != 1 ]]; then
        log "cleaning up"
        kubectl delete namespace "$APPS_NS" --ignore-not-found --wait=true --timeout=120s || true
        helm uninstall "$RELEASE" -n "$NAMESPACE" --wait || true
    fi
    exit $rc
}
trap cleanup EXIT

set_args=()
case "$CERTS" in
    cert-manager)
        if ! kubectl get crd certificates.cert-manager.io >/dev/null 2>&1; then
            log "installing cert-manager $CERT_MANAGER_VERSION"
            helm upgrade --install cert-manager oci://quay.io/jetstack/charts/cert-manager \
                --version "$CERT_MANAGER_VERSION" -n cert-manager --create-namespace \
                --set crds.enabled=true --wait --timeout 5m
        fi
        ;;
    self-signed) set_args+=(--set certManager.enabled=false) ;;
    *) fail "SPIN_OPERATOR_E2E_CERTS must be cert-manager or self-signed, not $CERTS" ;;
esac
if [[ -n "${SPIN_OPERATOR_E2E_IMAGE:-}" ]]; then
    set_args+=(--set "image.repository=${SPIN_OPERATOR_E2E_IMAGE%:*}" --set "image.tag=${SPIN_OPERATOR_E2E_IMAGE##*:}")
fi

log "installing the chart ($CERTS certificates)"
helm upgrade --install "$RELEASE" helm/spin-operator -n "$NAMESPACE" --create-namespace \
    "${set_args[@]}" --wait --timeout 5m
kubectl -n "$NAMESPACE" rollout status deployment/"$RELEASE" --timeout="$TIMEOUT"

log "waiting for the webhook CA to reach the webhook configurations"
for _ in $(seq 60); do
    ca=$(kubectl get validatingwebhookconfiguration "$RELEASE-validating-webhook-configuration" \
        -o jsonpath='{.webhooks[0].clientConfig.caBundle}')
    [[ -n "$ca" ]] && break
    sleep 2
done
[[ -n "$ca" ]] || fail "caBundle never set on $RELEASE-validating-webhook-configuration"

kubectl create namespace "$APPS_NS" --dry-run=client -o yaml | kubectl apply -f -

log "the validating webhook rejects examples/invalid"
for f in examples/invalid/*.yaml; do
    if kubectl -n "$APPS_NS" apply --dry-run=server -f "$f" >/dev/null 2>/tmp/spin-e2e-denied; then
        fail "$f was admitted"
    fi
    grep -q "denied the request" /tmp/spin-e2e-denied || { cat /tmp/spin-e2e-denied >&2; fail "$f failed for another reason than a webhook denial"; }
done

log "applying examples (executors first)"
kubectl -n "$APPS_NS" apply -f examples/executors.yaml
# Retried: the first requests can race the webhook's endpoints right after install.
for _ in 1 2 3; do
    kubectl -n "$APPS_NS" apply -f examples/ && break
    sleep 5
done
if [[ -n "${SPIN_OPERATOR_E2E_SAMPLES:-}" ]]; then
    kubectl -n "$APPS_NS" apply -f "$SPIN_OPERATOR_E2E_SAMPLES"
fi

log "waiting for the operator to create the app Deployments"
apps=$(kubectl -n "$APPS_NS" get spinapps -o jsonpath='{range .items[*]}{.metadata.name}={.spec.executor}{"\n"}{end}')
[[ -n "$apps" ]] || fail "no SpinApps were created"
while IFS='=' read -r app executor; do
    [[ -n "$executor" ]] || fail "SpinApp $app has no executor: the defaulting webhook did not run"
    creates=$(kubectl -n "$APPS_NS" get spinappexecutor "$executor" -o jsonpath='{.spec.createDeployment}')
    kubectl -n "$APPS_NS" wait --for=create service/"$app" --timeout="$TIMEOUT" >/dev/null
    if [[ "$creates" == true ]]; then
        kubectl -n "$APPS_NS" wait --for=create deployment/"$app" --timeout="$TIMEOUT" >/dev/null
        if [[ "${SPIN_OPERATOR_E2E_WAIT_READY:-0}" == 1 ]]; then
            kubectl -n "$APPS_NS" wait --for=condition=Available deployment/"$app" --timeout="$TIMEOUT"
        fi
        echo "ok: $app ($executor): Deployment and Service"
    else
        echo "ok: $app ($executor): Service only (external executor)"
    fi
done <<< "$apps"

log "an executor in use cannot be deleted"
if kubectl -n "$APPS_NS" delete spinappexecutor containerd-shim-spin --dry-run=server >/dev/null 2>&1; then
    fail "deleting an executor that apps use was admitted"
fi

log "e2e passed"
