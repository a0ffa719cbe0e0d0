#!/usr/bin/env sh
# Produce a local dev CA and a webhook serving pair, for running the server by hand:
#   certs/dev-cert.sh [OUT_DIR]            (default: ./dev-certs)
#   spin-operator run --cert-dir OUT_DIR ...
# Files: ca.crt ca.key (the CA), tls.crt tls.key (serving pair for the webhook Service names,
# localhost and 127.0.0.1). Uses openssl when installed, otherwise the operator's hidden
# `dev-cert` subcommand (same code as --self-signed). Force the latter with USE_CARGO=1.
# Environment: SERVICE (spin-operator-webhook), NAMESPACE (spin-operator), DAYS (365).
set -eu

out=${1:-dev-certs}
svc=${SERVICE:-spin-operator-webhook}
ns=${NAMESPACE:-spin-operator}
days=${DAYS:-365}

if [ -z "${USE_CARGO:-}" ] && command -v openssl >/dev/null 2>&1; then
  mkdir -p "$out"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  umask 077
  # umask covers new files only: existing key files are made private before keys go into them.
  for key in "$out/ca.key" "$out/tls.key"; do
    if [ -e "$key" ]; then chmod 600 "$key"; fi
  done
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -days 3650 -subj "/CN=spin-operator-dev-ca" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -subj "/CN=$svc.$ns.svc" -keyout "$out/tls.key" -out "$tmp/tls.csr" 2>/dev/null
  cat >"$tmp/ext.cnf" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$svc,DNS:$svc.$ns,DNS:$svc.$ns.svc,DNS:$svc.$ns.svc.cluster.local,DNS:localhost,IP:127.0.0.1
EXT
  openssl x509 -req -in "$tmp/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -CAcreateserial -CAserial "$tmp/ca.srl" -days "$days" -sha256 \
    -extfile "$tmp/ext.cnf" -out "$out/tls.crt" 2>/dev/null
  chmod 644 "$out/ca.crt" "$out/tls.crt"
  openssl verify -CAfile "$out/ca.crt" "$out/tls.crt" >/dev/null
  echo "wrote $out (openssl): ca.crt ca.key tls.crt tls.key for $svc.$ns.svc, localhost, 127.0.0.1"
else
  cd "$(dirname "$0")/.."
  case "$out" in /*) abs=$out ;; *) abs="$OLDPWD/$out" ;; esac
  cargo run --quiet -- dev-cert --out "$abs" --service "$svc" --namespace "$ns" --days "$days"
fi
