# udmg-server: a Raft-clustered managed file transfer gateway.
GO      ?= go
BIN     := bin/udmg-server
CONFIG  ?=
TRIALS  ?= 20

.PHONY: all build run test test-short lint figures clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/udmg-server

# One node on embedded defaults (or CONFIG=path/to/server.ini): API and /ping
# on 127.0.0.1:8080, SFTP on 2222, FTP on 2121, data under ./data.
run: build
	./$(BIN) $(if $(CONFIG),-c $(CONFIG))

# The whole suite, race detector on: unit tests, listener tests with real
# clients, and multi-node tests with real processes on 127.0.X.Y.
test: lint
	$(GO) test -race -count=1 -timeout 30m ./...

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
