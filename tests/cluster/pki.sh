#!/usr/bin/env bash
# pki.sh DIR: a throwaway PKI for the test control plane (openssl only; nothing downloaded).
set -euo pipefail
D=${1:?usage: pki.sh DIR}
mkdir -p "$D"
cd "$D"
[ -f ca.crt ] && [ -f sa.key ] && exit 0
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.crt \
  -subj "/CN=bookgen-test-control-plane-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
sign() {  # sign NAME SUBJECT EXTENSIONS
  openssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%b' "$3" >"$1.ext"
  openssl x509 -req -sha256 -days 365 -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out "$1.crt" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
SRV='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n'
CLI='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n'
sign apiserver "/CN=kube-apiserver" "$SRV"
sign admin "/O=system:masters/CN=bookgen-test-admin" "$CLI"
sign kcm "/CN=system:kube-controller-manager" "$CLI"
sign scheduler "/CN=system:kube-scheduler" "$CLI"
sign agent "/O=system:masters/CN=bookgen-node-agent" "$CLI"
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
chmod 600 ./*.key
