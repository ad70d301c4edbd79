#!/bin/sh
# Regenerates the TEST files of ../tls-upstream.toml: a CA (upstream-ca.pem) that backends'
# certificates would chain to, and a client certificate (upstream-client.pem, .key) the
# proxy presents for mTLS. Their private keys are published: never use them for real
# traffic. Needs openssl. Run from anywhere: sh examples/certs/generate-upstream.sh
set -eu
cd "$(dirname "$0")"
days=36500   # a century: these files exist for examples and tests only

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# The CA. Its key is deleted at the end: nothing else should ever be signed by it.
key upstream-ca.key
openssl req -x509 -new -key upstream-ca.key -sha256 -days "$days" -out upstream-ca.pem \
  -subj "/CN=lb-proxy example upstream CA (TEST ONLY, private key published)" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"

key upstream-client.key
openssl req -new -key upstream-client.key -subj "/CN=lb-proxy example client" -out upstream-client.csr
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' \
  > upstream-client.ext
openssl x509 -req -in upstream-client.csr -CA upstream-ca.pem -CAkey upstream-ca.key \
  -CAcreateserial -sha256 -days "$days" -extfile upstream-client.ext -out upstream-client.pem 2>/dev/null

rm -f upstream-ca.key upstream-ca.srl upstream-client.csr upstream-client.ext
