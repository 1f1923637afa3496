#!/usr/bin/env bash
# Builds the images docker-compose.yml runs, on a machine WITHOUT a registry:
#
#   node      static udmg-server (CGO_ENABLED=0) FROM scratch (deploy/Dockerfile.local)
#   base      Debian bookworm made by debootstrap and `docker import`
#             (postgresql-15, haproxy, iproute2, iptables)
#   postgres  base + deploy/postgres/ (an entrypoint compatible with the
#             official image: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB)
#   haproxy   base + the official image's command line
#
# Every image is tagged with a hash of its inputs and skipped when that tag
# already exists, so re-running costs a `go build` and a few `docker image
# inspect`s. On success the script writes the compose variables to
#   $IMAGES_ENV (default bin/images.env):
#     UDMG_NODE_IMAGE=…  POSTGRES_IMAGE=…  HAPROXY_IMAGE=…  NETTOOLS_IMAGE=…
# and prints them. Use them as `set -a; . bin/images.env; set +a` before
# docker-compose. They are compose variables only: never pass UDMG_* into a
# node's environment (a node refuses unknown UDMG_* settings).
#
# Settings (environment): VENDOR_KEY (base64 public key of the license
# vendor, built into udmg-server; empty = a build that accepts no license
# file and runs every cluster as a one-node evaluation), MIRROR (default: the
# first Debian URI in /etc/apt/sources.list.d or /etc/apt/sources.list),
# SUITE (bookworm), IMAGES_ENV, GO (go).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
GO=${GO:-go}
SUITE=${SUITE:-bookworm}
IMAGES_ENV=${IMAGES_ENV:-$ROOT/bin/images.env}
PACKAGES=postgresql-15,haproxy,iproute2,iptables,procps,ca-certificates

log() { printf '[images] %s\n' "$*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
hash_of() { sha256sum | cut -c1-12; }
# quiet runs a command and shows its output only when it fails.
quiet() {
	local out
	if ! out=$("$@" 2>&1); then
		printf '%s\n' "$out" >&2
		return 1
	fi
}

docker info >/dev/null 2>&1 || { log "no Docker engine answers (docker info failed)"; exit 3; }

# ---------------------------------------------------------------- node ----
mkdir -p bin
log "building static udmg-server"
CGO_ENABLED=0 "$GO" build -trimpath -buildvcs=false \
	-ldflags="-s -w -X github.com/udmg/gateway/licensing.vendorKey=${VENDOR_KEY:-}" \
	-o bin/udmg-server-static ./cmd/udmg-server
node_hash=$(cat bin/udmg-server-static deploy/Dockerfile.local | hash_of)
NODE_IMAGE=udmg-local/udmg-server:$node_hash
if have_image "$NODE_IMAGE"; then
	log "node image $NODE_IMAGE is up to date"
else
	ctx=$(mktemp -d)
	trap 'rm -rf "$ctx"' EXIT
	cp bin/udmg-server-static "$ctx/udmg-server"
	cp deploy/Dockerfile.local "$ctx/Dockerfile"
	quiet docker build -q --label "org.udmg.inputs=$node_hash" -t "$NODE_IMAGE" "$ctx"
	rm -rf "$ctx"
	trap - EXIT
	log "built $NODE_IMAGE"
	# Older node builds (one per source change); those still used by a
	# container stay.
	docker images udmg-local/udmg-server --format '{{.Repository}}:{{.Tag}}' |
		grep -vx "$NODE_IMAGE" | xargs -r docker rmi >/dev/null 2>&1 || true
fi

# ---------------------------------------------------------------- base ----
mirror() {
	if [ -n "${MIRROR:-}" ]; then echo "$MIRROR"; return; fi
	local m
	m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
	[ -n "$m" ] || m=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | grep -v security | awk '{print ($2 ~ /^\[/) ? $3 : $2}' | head -n1 || true)
	[ -n "$m" ] || m=http://deb.debian.org/debian
	echo "$m"
}
MIRROR_URL=$(mirror)
base_hash=$(printf 'minbase %s %s %s v1' "$SUITE" "$PACKAGES" "$MIRROR_URL" | hash_of)
BASE_IMAGE=udmg-local/debian-base:$SUITE-$base_hash
if have_image "$BASE_IMAGE"; then
	log "base image $BASE_IMAGE is up to date"
else
	if ! command -v debootstrap >/dev/null; then
		if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
			log "installing debootstrap with apt-get"
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
		else
			log "debootstrap is missing: install it (apt-get install debootstrap) and run again"
			exit 1
		fi
	fi
	dir=$(mktemp -d /var/tmp/udmg-base.XXXXXX)
	trap 'rm -rf "$dir"' EXIT
	log "debootstrap $SUITE from $MIRROR_URL (2.5 to 6 min)"
	start=$(date +%s)
	debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$dir" "$MIRROR_URL" >"$dir.log" 2>&1 || {
		tail -n 30 "$dir.log" >&2
		exit 1
	}
	rm -f "$dir.log"
	# Smaller image, and no trace of the host's machine identity.
	rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
	: >"$dir/etc/machine-id"
	tar -C "$dir" -c . | docker import \
		--change "LABEL org.udmg.inputs=$base_hash" \
		--change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV LANG=C.UTF-8' \
		- "$BASE_IMAGE" >/dev/null
	rm -rf "$dir"
	trap - EXIT
	log "built $BASE_IMAGE in $(($(date +%s) - start)) s"
fi

# ------------------------------------------------- postgres and haproxy ----
derived() { # name dir
	local name=$1 dir=$2 h
	h=$( (echo "$BASE_IMAGE"; cat "$dir"/*) | hash_of)
	local image=udmg-local/$name:$h
	if have_image "$image"; then
		log "$name image $image is up to date"
	else
		quiet docker build -q --build-arg "BASE=$BASE_IMAGE" --label "org.udmg.inputs=$h" -t "$image" "$dir"
		log "built $image"
	fi
	echo "$image"
}
POSTGRES_IMAGE=$(derived postgres deploy/postgres)
HAPROXY_IMAGE=$(derived haproxy deploy/haproxy)

cat >"$IMAGES_ENV" <<EOF
UDMG_NODE_IMAGE=$NODE_IMAGE
POSTGRES_IMAGE=$POSTGRES_IMAGE
HAPROXY_IMAGE=$HAPROXY_IMAGE
NETTOOLS_IMAGE=$BASE_IMAGE
EOF
cat "$IMAGES_ENV"
