#!/bin/sh
# Regenerates the TEST certificates in this directory (see README.md). Needs openssl.
# Run from anywhere: sh examples/certs/generate.sh
set -eu
cd "$(dirname "$0")"
days=36500   # a century: these files exist for examples and tests, never for real traffic

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# The example CA. Its key is deleted at the end: nothing else should ever be signed by it.
key ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -out ca.pem \
  -subj "/CN=lb-proxy example CA (TEST ONLY, private key published)" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"

# leaf NAME PURPOSE SAN
leaf() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$2" "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
    -days "$days" -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm "$1.csr" "$1.ext"
}

leaf example.com serverAuth "DNS:example.com,DNS:www.example.com"
leaf api.example.com serverAuth "DNS:api.example.com,DNS:*.api.example.com"
leaf client clientAuth "DNS:client.example.com"

rm -f ca.key ca.srl
