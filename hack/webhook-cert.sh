#!/usr/bin/env bash
# Makes a CA and a serving certificate for the readiness-gate webhook with
# openssl, stores them in the Secret clb-direct-system/clb-direct-webhook-tls
# and puts the CA into the MutatingWebhookConfiguration's caBundle. Run it
# after `kubectl apply -k deploy/`, and again before the certificate expires
# (the controller picks up the renewed Secret without a restart).
set -euo pipefail
days="${DAYS:-365}"
ns=clb-direct-system
svc=clb-direct-webhook
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=clb-direct-webhook-ca" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$svc.$ns.svc" -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.%s,DNS:%s.%s.svc\nextendedKeyUsage=serverAuth\n' "$svc" "$svc" "$ns" "$svc" "$ns" > "$dir/ext"
openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days "$days" \
  -extfile "$dir/ext" -out "$dir/tls.crt" 2>/dev/null
kubectl -n "$ns" create secret tls clb-direct-webhook-tls --cert "$dir/tls.crt" --key "$dir/tls.key" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl patch mutatingwebhookconfiguration clb-direct-readiness-gate --type=json \
  -p "[{\"op\":\"replace\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$(base64 -w0 < "$dir/ca.crt")\"}]"
echo "webhook certificate installed (valid $days days)"
