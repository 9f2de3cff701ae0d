# lazyfs — build, test and demo entry points. See README.md.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

# Packages with unit tests: everything but the end-to-end suites under tests/.
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e '/tests/' -e '/zz_')

.PHONY: all build deps test test-unit test-e2e demo bench bench-e2e mutation clean

all: build

build:
	@mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/lazyfs-snapshotter ./cmd/snapshotter
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/lazyfsd ./cmd/lazyfsd
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/snapshotterctl ./cmd/snapshotterctl

# deps installs what the tests and the demo run against (Debian packages and
# containerd 2.3.7 built from source); it is idempotent and fast when done.
deps:
	bash scripts/install-deps.sh

# test runs every test: unit tests, containerd's snapshotter conformance suite
# (package snapshot), and the end-to-end suites against real containerd, runc,
# a registry and FUSE. Needs root and /dev/fuse.
test: deps build test-unit test-e2e

test-unit:
	$(GO) test -count=1 -timeout 15m $(UNIT_PKGS)

test-e2e:
	$(GO) test -count=1 -timeout 25m -v ./tests/...

# demo starts a registry, containerd and the snapshotter in a temp dir, pulls
# an image through lazyfs and runs a container from it.
demo: deps build
	$(GO) run ./tests/demo

# bench runs the Go benchmarks (chunk reads, TOC parsing, tree memory);
# bench-e2e measures lazy pull against full pull, cold FUSE reads against
# native reads and a worker's memory with a 300,000-entry layer, against real
# containerd and a registry (needs root; about 5 minutes, longer on the first
# run, which builds and caches the test images).
bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime 3x $(UNIT_PKGS)

bench-e2e: deps build
	$(GO) run ./tests/bench $(BENCH_ARGS)

# mutation runs gremlins v0.6.0 package by package on a copy of the tree and
# writes the table (killed, lived, not covered, efficacy) to bin/mutation.txt.
# Not part of test: about an hour on 2 cores (docs/testing.md). Restrict it
# with MUTATION_PKGS="toc chunks".
mutation:
	bash scripts/mutation.sh $(MUTATION_PKGS)

clean:
	rm -rf bin
