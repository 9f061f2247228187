#!/usr/bin/env bash
# Builds the stack's images from this repository, with no base image and no
# registry: static Go binaries (the services, choreo-provision, choreo-probe
# and nats-server from the nats-server/v2 module in go.mod) are built here,
# on the host, and copied into FROM scratch images with CA certificates and
# a non-root user (uid 10001):
#
#   choreo-nats:$CHOREO_TAG      nats-server, choreo-probe
#   choreo-services:$CHOREO_TAG  every service, choreo-provision, choreo-probe
#   choreo-prometheus:$CHOREO_TAG  Debian's prometheus binary (apt-get install
#                                prometheus on this host) and the libraries it
#                                links against, choreo-probe
#
#   deploy/build.sh            # CHOREO_TAG defaults to "dev"
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${CHOREO_TAG:-dev}
out=$(mktemp -d "${TMPDIR:-/tmp}/choreo-images.XXXXXX")
trap 'rm -rf "$out"' EXIT

services="customer order payment inventory billing shipping carrier notification gateway"
pkgs=()
for s in $services; do pkgs+=("./services/cmd/$s"); done

# The CA certificates the images trust (TLS to anything outside the stack).
cacerts=""
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
  if [ -r "$f" ]; then cacerts=$f; break; fi
done
if [ -z "$cacerts" ]; then
  echo "build.sh: no CA certificate bundle found on this host (install ca-certificates)" >&2
  exit 1
fi

for image in nats services; do
  root="$out/$image"
  mkdir -p "$root/bin" "$root/etc/ssl/certs" "$root/data" "$root/mail" "$root/tmp"
  cp "$cacerts" "$root/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/:/sbin/nologin\nchoreo:x:10001:10001:choreo:/data:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nchoreo:x:10001:\n' >"$root/etc/group"
done

export CGO_ENABLED=0 GOOS=linux
flags=(-trimpath -ldflags "-s -w")
echo "building the binaries"
go build "${flags[@]}" -o "$out/nats/bin/" github.com/nats-io/nats-server/v2
go build "${flags[@]}" -o "$out/services/bin/" "${pkgs[@]}" ./cmd/choreo-provision ./deploy/probe
mv "$out/services/bin/probe" "$out/services/bin/choreo-probe"
cp "$out/services/bin/choreo-probe" "$out/nats/bin/choreo-probe"

# Prometheus: the Debian package's binary, with what it links against
# (ldd), at the paths it was linked with.
prom=/usr/bin/prometheus
if [ ! -x "$prom" ]; then
  echo "build.sh: $prom not found: install Debian's prometheus package (apt-get install prometheus; the daemon need not run)" >&2
  exit 1
fi
root="$out/prometheus"
mkdir -p "$root/bin" "$root/etc/prometheus" "$root/prometheus" "$root/tmp" "$root/lib" "$root/lib64"
printf 'root:x:0:0:root:/:/sbin/nologin\nchoreo:x:10001:10001:choreo:/prometheus:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nchoreo:x:10001:\n' >"$root/etc/group"
cp "$prom" "$root/bin/prometheus"
cp "$out/services/bin/choreo-probe" "$root/bin/choreo-probe"
for lib in $(ldd "$prom" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

for image in nats services prometheus; do
  echo "building choreo-$image:$tag"
  docker build -q -t "choreo-$image:$tag" -f "deploy/Dockerfile.$image" "$out/$image"
done
