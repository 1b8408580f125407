#!/usr/bin/env bash
# pki.sh DIR [NODE NODE_IP]: a throwaway PKI for the test cluster (openssl only; nothing downloaded).
# With a node: the kubelet's client and serving certificates, kube-proxy's, the apiserver's client
# certificate for the kubelet, and a front-proxy CA for aggregated APIs.
set -euo pipefail
D=${1:?usage: pki.sh DIR [NODE NODE_IP]}
NODE=${2:-}
NODE_IP=${3:-}
mkdir -p "$D"
cd "$D"
[ -f ca.crt ] && [ -f sa.key ] && { [ -z "$NODE" ] || [ -f kube-proxy.crt ]; } && exit 0
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
SRV='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,'"${NODE_IP:+IP:$NODE_IP,}"'DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n'
CLI='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n'
sign apiserver "/CN=kube-apiserver" "$SRV"
sign admin "/O=system:masters/CN=bookgen-test-admin" "$CLI"
sign kcm "/CN=system:kube-controller-manager" "$CLI"
sign scheduler "/CN=system:kube-scheduler" "$CLI"
sign agent "/O=system:masters/CN=bookgen-node-agent" "$CLI"
if [ -n "$NODE" ]; then
  sign kubelet-client "/O=system:nodes/CN=system:node:$NODE" "$CLI"
  sign kubelet-serving "/CN=$NODE" "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:$NODE,IP:$NODE_IP\n"
  sign kube-proxy "/CN=system:kube-proxy" "$CLI"
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$CLI"
  # Aggregated APIs (a metrics adapter) trust requests the apiserver proxies with this client certificate.
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout front-proxy-ca.key -out front-proxy-ca.crt \
    -subj "/CN=bookgen-test-front-proxy-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -keyout front-proxy-client.key -out front-proxy-client.csr \
    -subj "/CN=front-proxy-client" 2>/dev/null
  printf '%b' "$CLI" >front-proxy-client.ext
  openssl x509 -req -sha256 -days 365 -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key \
    -CAcreateserial -out front-proxy-client.crt -extfile front-proxy-client.ext 2>/dev/null
  rm -f front-proxy-client.csr front-proxy-client.ext
fi
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
chmod 600 ./*.key
