# nightjar: see README.md. Targets used by docs and CI are fixed (docs/ARCHITECTURE.md).
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: all build test test-short demo tools lint bench clean policy

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/nightjar ./cmd/nightjar

# Every test, integration tests included: they use the real restic, age, zstd, sqlite3 and
# MinIO installed by `make tools`.
test: tools build
	NIGHTJAR_REQUIRE_TOOLS=1 $(GO) test -p 2 -timeout 15m ./...

# Unit tests only, no external tools needed.
test-short:
	$(GO) test -short ./...

demo: build
	./scripts/demo.sh

# Rebuild the embedded built-in retention policy (reproducible: fixed flags, see
# sdk/policy/policytest) and the committed hostile test modules of core/retention.
policy:
	$(GO) run scripts/build-policy.go plugins/policy/gfs ./wasm gfs.wasm

tools:
	./scripts/install-tools.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Benchmarks against the stock tools on generated data; figures go to docs/benchmarks.md.
bench: tools build
	./bench/run.sh

clean:
	rm -rf bin demo bench/out
