# lazyfs — build, test and demo entry points. See README.md.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

# Packages with unit tests: everything but the end-to-end suites under tests/.
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e '/tests/' -e '/zz_')

# staticcheck runs at a pinned version, one that understands Go 1.26; bump it
# together with the Go version in go.mod.
STATICCHECK_VERSION = v0.8.2

# Where `make install` puts things. DESTDIR stages an install (packaging):
# then the containerd drop-in is written for CONTAINERD_VERSION instead of
# the node's containerd, and no file outside DESTDIR is touched.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR    ?= $(SYSCONFDIR)/systemd/system
CONTAINERD_VERSION ?= 2.3.7

.PHONY: install
.PHONY: all build deps lint check-tree test test-unit test-e2e demo bench bench-e2e bench-stargz bench-background bench-optimize bench-registry bench-failover bench-identity mutation clean

all: build

build:
	@mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/lazyfs-snapshotter ./cmd/snapshotter
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/lazyfsd ./cmd/lazyfsd
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/snapshotterctl ./cmd/snapshotterctl

# install puts the binaries, the systemd units (the snapshotter's, and
# containerd's drop-in that starts it first), the default config (kept when
# one exists) and containerd's configuration for lazyfs in place. Without
# DESTDIR it runs `snapshotterctl config containerd --write` for the
# containerd installed here (a backup of every file it changes). Upgrades:
# docs/install.md.
install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR)/containerd.service.d $(DESTDIR)$(SYSCONFDIR)/lazyfs
	install -m 0755 bin/lazyfs-snapshotter bin/lazyfsd bin/snapshotterctl $(DESTDIR)$(BINDIR)/
	sed -e 's#/usr/local/bin/#$(BINDIR)/#g' misc/systemd/lazyfs-snapshotter.service > $(DESTDIR)$(UNITDIR)/lazyfs-snapshotter.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/lazyfs-snapshotter.service
	install -m 0644 misc/systemd/containerd.service.d/lazyfs.conf $(DESTDIR)$(UNITDIR)/containerd.service.d/lazyfs.conf
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/lazyfs/config.toml ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/lazyfs/config.toml (misc/config.toml lists every key and default)"; \
	else \
		install -m 0644 misc/config.toml $(DESTDIR)$(SYSCONFDIR)/lazyfs/config.toml; \
	fi
	@if [ -n "$(DESTDIR)" ]; then \
		install -d $(DESTDIR)$(SYSCONFDIR)/containerd/conf.d; \
		bin/snapshotterctl config containerd --config $(DESTDIR)$(SYSCONFDIR)/lazyfs/config.toml \
			--containerd-version $(CONTAINERD_VERSION) --containerd-config $(DESTDIR)/nonexistent \
			> $(DESTDIR)$(SYSCONFDIR)/containerd/conf.d/lazyfs.toml; \
		echo "staged for containerd $(CONTAINERD_VERSION); on 1.6/1.7 run snapshotterctl config containerd --write on the node instead"; \
	elif command -v containerd >/dev/null; then \
		bin/snapshotterctl config containerd --write --config $(SYSCONFDIR)/lazyfs/config.toml; \
	else \
		echo "containerd not found: run snapshotterctl config containerd --write once it is installed"; \
	fi
	@echo "then: systemctl daemon-reload && systemctl enable --now lazyfs-snapshotter && systemctl restart containerd && snapshotterctl doctor"

# deps installs what the tests and the demo run against (Debian packages and
# containerd 2.3.7 built from source); it is idempotent and fast when done.
deps:
	bash scripts/install-deps.sh

# lint: formatting, go vet and staticcheck; part of `make test`.
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt: not formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# check-tree fails when git tracks a binary or a file over 1 MiB.
check-tree:
	@bash scripts/check-tree.sh

# test runs every check and test: the tree check, lint, unit tests,
# containerd's snapshotter conformance suite (package snapshot), and the
# end-to-end suites against real containerd, runc, a registry and FUSE.
# Needs root and /dev/fuse: a missing requirement fails the test that needs
# it, unless LAZYFS_ALLOW_SKIP=1; skips and the kernel facts the tests
# checked are printed at the end (scripts/test-summary.sh). -k: every part
# runs and reports even when an earlier one failed.
test: deps build
	@dir=$$(mktemp -d /tmp/lazyfs-test.XXXXXX); status=0; \
	LAZYFS_SKIP_LOG=$$dir/skips $(MAKE) --no-print-directory -k check-tree lint test-unit test-e2e || status=$$?; \
	bash scripts/test-summary.sh $$dir/skips; rm -rf "$$dir"; exit $$status

test-unit:
	$(GO) test -count=1 -timeout 15m $(UNIT_PKGS)

test-e2e:
	$(GO) test -count=1 -timeout 25m -v ./tests/...

# demo starts a registry, containerd and the snapshotter in a temp dir, pulls
# an image through lazyfs and runs a container from it.
demo: deps build
	$(GO) run ./tests/demo

# bench runs the Go benchmarks (chunk reads, TOC parsing, tree memory);
# bench-e2e measures lazy pull + first command against full pull (registry
# requests and bytes too), cold FUSE reads against native reads and a worker's
# memory (also with a 300,000-entry layer), against real containerd and a
# registry on loopback, then through a proxy emulating a remote registry
# (20 ms per request, 200 Mbit/s), each side by side with stargz-snapshotter
# on the same image; needs root; about 10 minutes, longer on the first run,
# which builds stargz and builds and caches the test images.
bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime 3x $(UNIT_PKGS)

bench-e2e: deps build bench-stargz
	$(GO) run ./tests/bench -stargz -network loopback $(BENCH_ARGS)
	$(GO) run ./tests/bench -stargz -network remote $(BENCH_ARGS)

# bench-stargz builds bin/stargz, stargz-snapshotter (the version pinned in
# tests/stargz/go.mod) served as a proxy snapshotter, which bench-e2e
# measures side by side with lazyfs (a module of its own: lazyfs does not
# depend on it; the first build downloads and compiles it, minutes).
bench-stargz:
	cd tests/stargz && $(GO) build -o ../../bin/stargz .

# bench-background measures background fetch (issue 11 point 4): the cold
# read of the 64 MiB file with it on and off, and the time until an image is
# fully cached against a full pull, medians of 5 runs;
# BENCH_ARGS="-background-rate 20MiB" paces the side with it on.
bench-background: deps build
	$(GO) run ./tests/bench -background -runs 5 $(BENCH_ARGS)

# bench-registry measures how registry reads ride out faults (resets + 5xx,
# stalls, truncated and corrupt answers, an outage) through the fault proxy,
# against a no-fault baseline of the same run; BENCH_REGISTRY_ARGS e.g.
# "-runs 20 -latency 20ms -down 60s".
bench-registry:
	$(GO) run ./tests/benchregistry $(BENCH_REGISTRY_ARGS)

# bench-optimize measures whether an image optimized with `snapshotterctl
# image optimize` starts faster than its plain eStargz conversion: lazy pull
# + a first command reading small files spread over a layer, through a
# proxy adding 20 ms per registry request; medians of 5 cold runs and the
# ratio (needs root; about two minutes).
bench-optimize: deps build
	$(GO) run ./tests/benchopt $(BENCH_ARGS)

# bench-identity measures what each [layers] verify setting costs in a pull
# + first command, against a full pull with overlayfs in the same run
# (LAZYFS_IDENTITY_BENCH_RUNS runs of each, default 5; medians).
bench-identity: deps build
	$(GO) test -count=1 -run '^$$' -bench '^BenchmarkVerifyModes$$' -benchtime 1x -timeout 60m -v ./tests/e2e

# bench-failover measures what a worker failover costs the readers of
# running containers: death-to-serving time, the stall a reader sees across a
# SIGKILL and the extra latency, median and p99 over
# LAZYFS_FAILOVER_BENCH_KILLS kills (default 100), against the op latency
# without kills measured in the same run (needs root; a few minutes).
bench-failover: deps build
	$(GO) test -count=1 -run '^$$' -bench '^BenchmarkFailover$$' -benchtime 1x -timeout 60m -v ./tests/e2e

# mutation runs gremlins v0.6.0 package by package on a copy of the tree and
# writes the table (killed, lived, not covered, efficacy) to bin/mutation.txt.
# Not part of test: about an hour on 2 cores (docs/testing.md). Restrict it
# with MUTATION_PKGS="toc chunks".
mutation:
	bash scripts/mutation.sh $(MUTATION_PKGS)

clean:
	rm -rf bin
