# udmg-server: a Raft-clustered managed file transfer gateway.
GO      ?= go
BIN     := bin/udmg-server
CONFIG  ?=
TRIALS  ?= 20

.PHONY: all build run test test-short lint figures clean deps dev-license sim

all: build

# VENDOR_KEY (base64 ed25519 public key) is the key license files must be
# signed with; a build without it accepts no license (one-node evaluation).
VENDOR_KEY ?= $(shell cat data/dev-vendor/vendor.pub.b64 2>/dev/null)
LDFLAGS    := $(if $(VENDOR_KEY),-X github.com/udmg/gateway/licensing.vendorKey=$(VENDOR_KEY))

# -buildvcs=auto: the binaries name the commit they were built from
# (udmg-server -version, udmgctl version) even where GOFLAGS turns it off.
build:
	$(GO) build -buildvcs=auto -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/udmg-server
	$(GO) build -buildvcs=auto -o bin/udmgctl ./cmd/udmgctl
	$(GO) build -buildvcs=auto -o bin/udmg-proxy ./cmd/udmg-proxy

# A development vendor key (data/dev-vendor, made once) and a license for
# NODES nodes signed with it (data/dev-license.json); `make build` then
# builds the server with that key. Not for production: the vendor keeps the
# real key.
NODES ?= 3
dev-license:
	$(GO) build -o bin/udmgctl ./cmd/udmgctl
	@mkdir -p data/dev-vendor; test -f data/dev-vendor/vendor.key || ./bin/udmgctl --json license keygen --out data/dev-vendor | \
		sed -n 's/.*"publicKey": *"\([^"]*\)".*/\1/p' > data/dev-vendor/vendor.pub.b64
	./bin/udmgctl license sign --key data/dev-vendor/vendor.key --licensee "development" --nodes $(NODES) \
		--expires $$(date -u -d '+1 year' +%F) --out data/dev-license.json
	$(MAKE) build

# One node on embedded defaults (or CONFIG=path/to/server.ini): API and /ping
# on 127.0.0.1:8080, SFTP on 2222, FTP on 2121, data under ./data.
run: build
	./$(BIN) $(if $(CONFIG),-c $(CONFIG))

# What the tests run for real, installed from Debian when missing:
# PostgreSQL 15 server binaries (initdb, pg_ctl), the OpenSSH client, sshd
# with sftp-server (a real remote SFTP partner), curl and lftp (FTP clients),
# vsftpd (the FTP reference of make bench; testsupport.StartVsftpd runs its
# own), chromium (the admin page's browser test). The vsftpd package's own
# service is stopped and disabled when deps installs it: nothing of it
# listens on port 21.
deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql-15"; \
	command -v sftp >/dev/null 2>&1 || missing="$$missing openssh-client"; \
	test -x /usr/sbin/sshd -a -x /usr/lib/openssh/sftp-server || missing="$$missing openssh-server"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v lftp >/dev/null 2>&1 || missing="$$missing lftp"; \
	test -x /usr/sbin/vsftpd || missing="$$missing vsftpd"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v iptables >/dev/null 2>&1 || missing="$$missing iptables"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v keepalived >/dev/null 2>&1 || missing="$$missing keepalived"; \
	command -v mkfs.ext4 >/dev/null 2>&1 || missing="$$missing e2fsprogs"; \
	command -v spin >/dev/null 2>&1 || missing="$$missing spin"; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	command -v zsh >/dev/null 2>&1 || missing="$$missing zsh"; \
	command -v gpg >/dev/null 2>&1 && command -v gpgconf >/dev/null 2>&1 || missing="$$missing gnupg"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing || exit 1; \
		case "$$missing " in *" vsftpd "*) \
			$$SUDO systemctl disable --now vsftpd >/dev/null 2>&1 || \
			{ $$SUDO service vsftpd stop; $$SUDO update-rc.d vsftpd disable; } >/dev/null 2>&1 || true;; \
		esac; \
	fi

# The whole suite, race detector on: unit tests, listener tests with real
# clients, a real PostgreSQL, and multi-node tests with real processes on
# 127.0.X.Y; then the docker compose chaos suite (make e2e) when a Docker
# engine answers.
test: deps lint
	$(MAKE) model
	$(MAKE) model N=4 MODEL_FLAGS=-DSYMMETRY MODEL_PAN="-m400000 -w28"
	$(MAKE) model N=5 MODEL_FLAGS=-DSYMMETRY MODEL_PAN="-m1000000 -w28"
	$(MAKE) model-grace
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) sim
	$(MAKE) chaos TRIALS=3
	$(MAKE) e2e

# The lease simulation at full length (100,000 schedules; the race run
# above does 5,000): the real lease machine and FSM under random faults.
sim:
	$(GO) test -count=1 -run 'TestLeaseSimulation' -v ./cluster -sim.schedules=100000

# The chaos campaign without Docker (needs root: loop-mounted ext4,
# fsfreeze, iptables, setpriv; skips loudly otherwise): TRIALS seeded random
# combinations of kill -9, SIGSTOP, disk stall, partitions, SIGTERM and
# restarts on a local cluster under SFTP/FTP clients; one line per trial,
# then the table. CHAOS_ARGS: e.g. -chaos.seed=N -chaos.nodes=5.
.PHONY: chaos
CHAOS_ARGS ?=
chaos:
	@missing=""; \
	command -v iptables >/dev/null 2>&1 || missing="$$missing iptables"; \
	command -v mkfs.ext4 >/dev/null 2>&1 || missing="$$missing e2fsprogs"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(GO) test -count=1 -timeout 0 -run 'TestChaos$$' -v ./cluster -args -chaos.trials=$(TRIALS) $(CHAOS_ARGS)

# The lease model (model/lease.pml, issue 11; model/README.md): spin's
# exhaustive search of the fixed rules must end with "errors: 0", and with
# the rule issue 11 removed (-DOLD_RELEASE) it must find two nodes serving
# at once, whose trail it prints. N nodes (3); MODEL_FLAGS: more -D for
# every run, e.g. MODEL_FLAGS="-DD=3 -DWAIT=4". -DSYMMETRY stores one state
# per renaming of the nodes (model/README.md): `make test` also runs
# N=4 MODEL_FLAGS=-DSYMMETRY MODEL_PAN="-m400000 -w28" (about 3 min) and
# N=5 MODEL_FLAGS=-DSYMMETRY MODEL_PAN="-m1000000 -w28" (about 12 min,
# 5.2 GB) exhaustively. MODEL_MUTANTS are the mutants that must overlap,
# searched with MODEL_MUTANT_PAN.
.PHONY: model model-grace
N ?= 3
MODEL_FLAGS ?=
MODEL_PAN ?= -m200000 -w25
MODEL_CC ?= -DCOLLAPSE
MODEL_MUTANTS ?= OLD_RELEASE OLD_RELEASE=2 OLD_RELEASE=3
MODEL_MUTANT_PAN ?= -m50 -w24 -i
model:
	@command -v spin >/dev/null 2>&1 && command -v gcc >/dev/null 2>&1 || { \
		echo "installing: spin gcc"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq spin gcc; }
	@rm -rf bin/model && mkdir -p bin/model && cp model/lease.pml bin/model/
	@cd bin/model && spin -DN=$(N) $(MODEL_FLAGS) -a lease.pml && \
		gcc -O2 -w -DSAFETY -DNOREDUCE $(MODEL_CC) -o pan pan.c && \
		echo "model: N=$(N) $(MODEL_FLAGS): exhaustive search of the fixed lease rules" && \
		./pan $(MODEL_PAN) > fixed.txt; \
		grep -E 'State-vector|states, stored|total actual memory|elapsed time' fixed.txt; \
		if grep -q 'max search depth too small' fixed.txt || ! grep -q 'errors: 0' fixed.txt; then \
			cat fixed.txt; spin -DN=$(N) $(MODEL_FLAGS) -t -T lease.pml | grep -E '^t=' ; \
			echo "model: FAILED: the fixed rules let two nodes serve (or answer for the address) at once, or the search was cut short"; exit 1; fi
	@cd bin/model && for m in $(MODEL_MUTANTS); do \
		spin -DN=$(N) -D$$m $(MODEL_FLAGS) -a lease.pml && gcc -O2 -w -DSAFETY -DNOREDUCE -o pan-old pan.c && \
		./pan-old $(MODEL_MUTANT_PAN) > old.txt; \
		if ! grep -q 'assertion violated' old.txt; then cat old.txt; \
			echo "model: FAILED: the mutant $$m found no overlap"; exit 1; fi; \
		echo "model: the mutant $$m lets two nodes serve, or answer for the address, at once:"; \
		spin -DN=$(N) -D$$m $(MODEL_FLAGS) -t -T lease.pml | grep -E '^t=' | tail -n 40; \
	done; echo "model: ok (fixed rules: errors: 0; every mutant: overlap found)"

# The service address's grace (model/README.md, "Grace"): three nodes whose
# addresses outlast their leases by G = 2 (a clock unit is D/2), two
# acquisitions; the successor's wait must cover the grace, stretched.
model-grace:
	$(MAKE) model N=3 MODEL_FLAGS="-DG=2 -DMAXE=2" MODEL_PAN="-m100000 -w25" \
		MODEL_MUTANTS="GRACE_NONE GRACE_UNSTRETCHED" MODEL_MUTANT_PAN="-m100000 -w24"

test-short:
	$(GO) test -short -count=1 ./...

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

# Failover figures: TRIALS kill -9, SIGTERM and SIGSTOP trials on a local
# three-node cluster at default timings; prints median and p99.
figures:
	$(GO) test -count=1 -timeout 60m -run 'TestFailover$$' -v ./cluster -args -trials=$(TRIALS)

clean:
	rm -rf bin data

# MFT figures (issue 4): SFTP through the gateway versus OpenSSH's
# sftp-server, FTP versus vsftpd and cp, 100 concurrent SFTP uploads,
# checkpoint cost; ROUNDS interleaved rounds, one table of medians and ratios. Minutes; not
# part of make test. BENCH_ARGS: e.g. -only=sftp -size=268435456 -perf=DIR.
# The mixed soak (small files, logins, API polling and large uploads at once,
# with the lease renewals meanwhile) runs only when named: ROUNDS=1
# BENCH_ARGS='-only=soak -soak-for=10m'.
.PHONY: bench
ROUNDS ?= 5
BENCH_ARGS ?=
bench: deps
	$(GO) test -count=1 -timeout 90m -run 'TestFigures$$' -v ./bench -args -figures -rounds=$(ROUNDS) $(BENCH_ARGS)

# ---- docker compose deployment (docker-compose.yml, deploy/, e2e/) ----
.PHONY: images e2e
E2E_TIMEOUT ?= 40m

# Images for docker-compose.yml without a registry: static node FROM scratch,
# PostgreSQL and HAProxy on a debootstrap Debian base; cached by input hash.
# Writes the compose variables to bin/images.env.
images:
	VENDOR_KEY="$(VENDOR_KEY)" deploy/build-images.sh

# The chaos suite against the compose cluster (skipped, loudly, when no
# Docker engine answers): about 25 min here, images built from scratch
# included. It builds the images itself (cached by content hash), the node
# binary with the test vendor key so that it can license three nodes.
# E2E_SCENARIOS, E2E_TRIALS, E2E_SOAK: see e2e/doc.go.
e2e:
	@if ! docker info >/dev/null 2>&1; then \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
		echo "!! e2e: SKIPPED — no Docker engine answers (docker info failed)"; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
		exit 0; \
	fi; \
	E2E=1 $(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v -run 'TestChaos$$' ./e2e
