# nightjar: see README.md. Targets used by docs and CI are fixed (docs/ARCHITECTURE.md).
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: all build test test-short demo tools lint bench clean policy proto

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/nightjar ./cmd/nightjar
	$(GO) build -o bin/nightjar-sink-folder ./sdk/examples/sink-folder

# Regenerates the blob.v1 plugin protocol's Go code (committed) with Debian's protoc and
# pinned code generators installed into .tools/bin.
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
proto:
	GOBIN=$(CURDIR)/.tools/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(CURDIR)/.tools/bin $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	protoc -I sdk/blob/proto \
	  --plugin=protoc-gen-go=.tools/bin/protoc-gen-go --plugin=protoc-gen-go-grpc=.tools/bin/protoc-gen-go-grpc \
	  --go_out=. --go_opt=module=github.com/nightjar-backup/nightjar \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/nightjar-backup/nightjar \
	  sdk/blob/proto/blob/v1/blob.proto

# Every test, integration tests included: they use the real restic, age, zstd, sqlite3 and
# MinIO installed by `make tools`.
# The zstd transform's tests run twice: with cgo (zstd's C library, where a C compiler is
# found) and without (the pure-Go encoder that CGO_ENABLED=0 builds use).
test: tools build
	NIGHTJAR_REQUIRE_TOOLS=1 $(GO) test -p 2 -timeout 15m ./...
	NIGHTJAR_REQUIRE_TOOLS=1 CGO_ENABLED=0 $(GO) test ./plugins/transform/zstd/

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
	CGO_ENABLED=0 $(GO) vet ./plugins/transform/zstd/

# Benchmarks against the stock tools on generated data; figures go to docs/benchmarks.md.
bench: tools build
	./bench/run.sh

clean:
	rm -rf bin demo bench/out
