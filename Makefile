# Telemed: `make run` starts the service with its demo configuration, `make test` runs every test.
# Both install what they need on a fresh Debian machine (apt and npm packages, the web build).

CARGO ?= cargo
# loadtest's VP8 media links Debian's FFmpeg (libavcodec, built with libvpx) through bindings that
# bindgen makes with libclang; its Opus (the `opus` crate) builds the bundled libopus with cmake.
APT_PACKAGES := chromium fonts-noto-cjk pkg-config cmake redis-server \
	libavcodec-dev libavformat-dev libavutil-dev clang libclang-dev
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test deps web release test-rust test-e2e bench-call-cpu bench-probe bench-probe-call bench-line-test bench-steering bench-bwe openapi lint fmt clean

run: deps web release
	$(TARGET_DIR)/release/telemed

test: deps web release test-rust test-e2e

# System packages, installed only when missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

web-client/node_modules/.package-lock.json: web-client/package.json web-client/package-lock.json
	cd web-client && npm install --no-audit --no-fund
	touch $@

web: web-client/node_modules/.package-lock.json
	cd web-client && npm run build

# One release build serves `make run`, the Rust tests and the browser tests.
release:
	$(CARGO) build --release --bins

test-rust: release
	$(CARGO) test --release --workspace

test-e2e: release web
	cd web-client && TELEMED_BIN=$(TARGET_DIR)/release/telemed npm run test:e2e

# Benchmark (not a test): relay CPU during a two-browser call; see docs/benchmarks.md.
bench-call-cpu: deps web release
	cd web-client && TELEMED_BIN=$(TARGET_DIR)/release/telemed node bench/call-cpu.mjs --seconds 60 --protocol udp
	cd web-client && TELEMED_BIN=$(TARGET_DIR)/release/telemed node bench/call-cpu.mjs --seconds 60 --protocol tcp

# Benchmark (not a test): bandwidth-probe against tbf bottlenecks in network namespaces (root), with
# iperf3 for comparison; see docs/benchmarks.md.
bench-probe:
	CARGO_TARGET_DIR=$(TARGET_DIR) bash bandwidth-probe/rig/bench.sh

# Benchmark (not a test): how much a measurement raises a live call's queueing delay (root); see
# docs/benchmarks.md.
bench-probe-call:
	CARGO_TARGET_DIR=$(TARGET_DIR) bash bandwidth-probe/rig/beside-call.sh

# Benchmark (not a test): the browser line test through `loadtest link`; see docs/benchmarks.md.
bench-line-test: deps web release
	cd web-client && TELEMED_BIN=$(TARGET_DIR)/release/telemed LOADTEST_BIN=$(TARGET_DIR)/release/loadtest node bench/line-test.mjs --down 1000k,2000k,4000k --up 1000k --delay 25ms

# Benchmark (not a test): the Chromium variant of `loadtest bwe` on rmcat-5.1: through the relay with
# end-to-end rate control on and off, and Chromium peer-to-peer as the reference; see docs/benchmarks.md.
bench-steering: deps web release
	cd web-client && TELEMED_BIN=$(TARGET_DIR)/release/telemed LOADTEST_BIN=$(TARGET_DIR)/release/loadtest node bench/steering.mjs --modes on,off,p2p --camera fake

# Benchmark (not a test): the bandwidth-adaptation scenarios with the Rust media bots through the relay
# and the link emulator, one JSON line and one SVG plot each; see docs/benchmarks.md.
BWE_SCENARIOS ?= rmcat-5.1 lossy-768k county-512k two-consults
bench-bwe: deps release
	for s in $(BWE_SCENARIOS); do \
		$(TARGET_DIR)/release/loadtest bwe --scenario $$s --json --plot docs/bench/bwe-$$s.svg || exit 1; \
	done

# Regenerate docs/openapi.json from the code (a test fails when it is out of date).
openapi: release
	$(TARGET_DIR)/release/telemed openapi > docs/openapi.json

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings
	cd web-client && npx tsc --noEmit

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf web-client/dist web-client/node_modules
