#!/usr/bin/env bash
# Makes what the stack needs and nobody commits: a certificate authority of
# its own, the nats-servers' certificate (for clients and for the cluster's
# routes: nats-1, nats-2, nats-3, localhost, 127.0.0.1), a client
# certificate for the services, and an nkey identity per service plus the
# admin, with the servers' authorization block (cmd/choreo-auth: the
# permissions derived from the flows). Existing files are kept: run it again
# after a change of the flows to update auth.conf, with the same keys.
#
#   deploy/secrets.sh            # into deploy/secrets, or $CHOREO_SECRETS
#
# The containers run as uid 10001: run as root, the files are given to it
# (0600, in a 0700 directory); otherwise they are made readable to all
# local users (fine for a laptop, not for a shared machine).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CHOREO_SECRETS:-deploy/secrets}
mkdir -p "$out"
out=$(cd "$out" && pwd)
umask 077

if [ ! -s "$out/ca.pem" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cat >"$tmp/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = choreo
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:nats-1,DNS:nats-2,DNS:nats-3,DNS:localhost,IP:127.0.0.1,IP:::1
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
CNF
  ossl() { openssl "$@" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }; }
  ossl ecparam -name prime256v1 -genkey -noout -out "$out/ca-key.pem"
  ossl req -config "$tmp/openssl.cnf" -x509 -new -key "$out/ca-key.pem" -sha256 -days 825 \
    -subj "/CN=choreo compose CA" -extensions ca -out "$out/ca.pem"
  for leaf in server client; do
    ossl ecparam -name prime256v1 -genkey -noout -out "$out/$leaf-key.pem"
    ossl req -config "$tmp/openssl.cnf" -new -key "$out/$leaf-key.pem" -subj "/CN=choreo $leaf" -out "$tmp/$leaf.csr"
    ossl x509 -req -in "$tmp/$leaf.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" -CAcreateserial \
      -days 825 -sha256 -extfile "$tmp/openssl.cnf" -extensions "$leaf" -out "$out/$leaf-cert.pem"
  done
  rm -f "$out/ca.srl"
  echo "deploy/secrets.sh: made a CA and certificates in $out"
fi

# One nkey per identity (kept when present) and the servers' users.
go run ./cmd/choreo-auth --credentials "$out/credentials" >"$out/auth.conf.new"
mv "$out/auth.conf.new" "$out/auth.conf"

# The gateway's key for customers' tokens and the operator's token (kept
# when present): tokens outlive a restart of the gateway, and the operator
# lists every customer and order with the token.
umask 077
[ -s "$out/customer-tokens.key" ] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$out/customer-tokens.key"
[ -s "$out/operator-token" ] || od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$out/operator-token"

# The key ring that encrypts what choreo stores (saga.LoadKeyRing: lines
# "<id> <base64 AES-256 key>", the first seals; kept when present). To
# rotate, put a new line first and keep the old ones while sagas they
# sealed are kept (the retention), then restart the services.
[ -s "$out/payload-keys" ] || printf '# choreo payload keys, newest first\nk%s %s\n' "$(date -u +%Y%m%d)" \
  "$(head -c 32 /dev/urandom | base64 | tr -d '\n')" >"$out/payload-keys"

if [ "$(id -u)" = 0 ]; then
  chown -R 10001:10001 "$out"
  chmod -R u=rwX,go= "$out"
else
  echo "deploy/secrets.sh: not root: the files in $out are made readable to every local user, for the containers' uid 10001" >&2
  chmod -R a+rX "$out"
fi
echo "deploy/secrets.sh: identities and auth.conf in $out"
