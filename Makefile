# The commands README.md shows. `make test` is what CI runs (through .ci/run).
SHELL := /bin/bash
.PHONY: run test test-sqlite test-postgres test-edge test-contract test-browser test-service bench lint fmt release edge edge-tls

# The PostgreSQL suite uses TEST_POSTGRES_URL, or this when a server answers on the default port.
DEFAULT_TEST_POSTGRES_URL := postgresql://postgres@127.0.0.1:5432/test

run:
	cargo run --release

# Everything on SQLite, the integration suite again on PostgreSQL when one is available, the
# contract test of /openapi.json, and the browser test of /docs. One failing suite does not stop
# the others, so a run reports everything that is wrong; it still fails at the end.
test:
	@$(MAKE) --no-print-directory --keep-going test-sqlite test-postgres test-edge test-contract test-browser test-service

# The vendored tiny_http is outside the workspace (its upstream code is not held to our lints),
# so its own unit tests, the HTTP parser's rule-by-rule checks, are run by path (with its TLS
# feature, whose deadline arithmetic has tests of its own).
test-sqlite:
	cargo test
	cargo test --manifest-path vendor/tiny_http/Cargo.toml --target-dir target/tiny_http --lib --features ssl-rustls

# The edge build (README "An edge build"): SQLite only, no tokio, no Swagger UI. Its binary
# must stay within EDGE_MAX_BYTES (4 MiB) and free of tokio, and the unit tests and the SQLite
# API suite run again on its code.
EDGE_MAX_BYTES := 4194304
test-edge: edge
	@size=$$(stat -c %s target/edge/edge/backnd-api); \
	echo "edge binary: $$size bytes (at most $(EDGE_MAX_BYTES))"; \
	test "$$size" -le $(EDGE_MAX_BYTES)
	@if cargo tree --no-default-features -e normal --prefix none | grep -q "^tokio "; then \
		echo "the edge build depends on tokio"; exit 1; \
	fi
	cargo test --no-default-features --lib --test api

# The edge binary alone, in a target directory of its own so it never replaces the standard one.
edge:
	cargo build --profile edge --no-default-features --target-dir target/edge

# The edge binary with HTTPS (the `tls` feature): over EDGE_MAX_BYTES, so not part of
# `make test`; for a host that wants HTTPS without a proxy more than the smallest binary.
edge-tls:
	cargo build --profile edge --no-default-features --features tls --target-dir target/edge-tls

test-postgres:
	@url="$${TEST_POSTGRES_URL:-}"; \
	if [ -z "$$url" ] && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then \
		url="$(DEFAULT_TEST_POSTGRES_URL)"; \
	fi; \
	if [ -z "$$url" ]; then \
		echo "PostgreSQL suite SKIPPED: TEST_POSTGRES_URL is not set and nothing answers on 127.0.0.1:5432"; \
	else \
		echo "PostgreSQL suite: the integration tests again, each in a schema of its own"; \
		TEST_BACKEND=postgres TEST_POSTGRES_URL="$$url" cargo test --test api -- --include-ignored; \
	fi

# Schemathesis against the live server and its own OpenAPI document (tests/contract/run.sh);
# installs itself into the ignored .venv-contract from PyPI.
test-contract:
	tests/contract/run.sh

# Swagger UI at /docs, and CORS from pages on other origins, in headless Chromium
# (tests/browser/README.md). Each says it is SKIPPED when /usr/bin/chromium is missing, unless
# REQUIRE_BROWSER=1 (CI), which makes that a failure. Both run even when the first fails; each
# ends with its own "browser: N passed, M failed" line, which .ci/run adds up.
test-browser:
	@if [ -x "$${CHROMIUM_PATH:-/usr/bin/chromium}" ] && \
	   [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then \
		(cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund); \
	fi
	@status=0; \
	node tests/browser/docs.test.mjs || status=1; \
	node tests/browser/cors.test.mjs || status=1; \
	exit $$status

# Speed and footprint (README "Performance"): criterion micro-benchmarks, then the release
# binary under wrk, one scenario at a time, with each target printed beside its figure.
# The systemd units in contrib/, as `systemd-analyze verify` and `security` judge them. verify
# wants ExecStart's binary to exist, so it checks copies that point at the one just built;
# everything else is checked as shipped. Each service's sandbox must keep its exposure at or
# under 2.0 ("OK"; they are 1.5 and lower).
SERVICE_MAX_EXPOSURE := 20
test-service:
	@command -v systemd-analyze >/dev/null || { echo "systemd-analyze is missing (Debian's systemd)"; exit 1; }
	cargo build
	@dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	for unit in contrib/*.service contrib/*.timer; do \
		sed "s|^ExecStart=/usr/local/bin/backnd-api|ExecStart=$(CURDIR)/target/debug/backnd-api|" \
			"$$unit" > "$$dir/$$(basename "$$unit")"; \
	done && \
	systemd-analyze verify --man=no "$$dir"/*.service "$$dir"/*.timer && \
	for unit in "$$dir"/*.service; do \
		systemd-analyze security --offline=yes --threshold=$(SERVICE_MAX_EXPOSURE) "$$unit" > "$$dir/security" \
			|| { cat "$$dir/security"; exit 1; }; \
		echo "$$(basename "$$unit"): $$(tail -n 1 "$$dir/security")"; \
	done && \
	echo "service: 1 passed, 0 failed"

bench:
	cargo build --release
	cargo bench --bench micro -- --quick
	python3 bench/run.py

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --no-default-features -- -D warnings

fmt:
	cargo fmt --all

release:
	cargo build --release
