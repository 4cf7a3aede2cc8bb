# berth: build, test, demo and benchmarks. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
export GOFLAGS := -buildvcs=false
VERSION ?= 0.1.0-dev
COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/berth-dev/berth/internal/version.Version=$(VERSION) \
           -X github.com/berth-dev/berth/internal/version.GitCommit=$(COMMIT)
BIN := bin/berth
# Static, so the same binary also runs inside containers as their --init (keep in step with
# testutil.BuildBerth).
BUILD_FLAGS := -tags netgo,osusergo
STATICCHECK := $(shell command -v staticcheck 2>/dev/null || echo $(shell $(GO) env GOPATH)/bin/staticcheck)

.PHONY: help deps build test unit lint demo demo-stop bench clean fuzz

help:
	@echo "make demo   - install deps, build, start the daemon, import busybox, list images"
	@echo "make test   - lint and run every test (unit, integration as root, end-to-end)"
	@echo "make build  - build bin/berth"
	@echo "make bench  - side-by-side benchmarks (see docs/benchmarks.md)"

deps:
	bash scripts/install-deps.sh

build:
	$(GO) build $(BUILD_FLAGS) -ldflags "$(LDFLAGS) -linkmode external -extldflags -static" -o $(BIN) ./cmd/berth

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if [ -x "$(STATICCHECK)" ]; then $(STATICCHECK) ./...; else echo "staticcheck not installed; skipped"; fi

# Unit, integration (as root) and end-to-end tests. Tests that need root skip with a reason
# otherwise. -p 2 matches the two cores CI has.
test: deps lint
	$(GO) test -p 2 -count=1 -timeout 18m ./...
	for m in third_party/*/go.mod; do (cd $$(dirname $$m) && $(GO) vet ./... && $(GO) test -count=1 ./...) || exit 1; done

unit:
	$(GO) test -short -count=1 ./...

# Run each fuzz target briefly (they also run their seeds in `make test`).
fuzz:
	bash scripts/fuzz.sh 20s

demo: deps build
	bash scripts/demo.sh

demo-stop:
	bash scripts/demo.sh stop

bench: deps build
	bash bench/run.sh

clean:
	rm -rf bin tmp
