# The commands README.md shows. `make test` is what CI runs (through .ci/run).
SHELL := /bin/bash
.PHONY: run test test-sqlite test-postgres lint fmt release

# The PostgreSQL suite uses TEST_POSTGRES_URL, or this when a server answers on the default port.
DEFAULT_TEST_POSTGRES_URL := postgresql://postgres@127.0.0.1:5432/test

run:
	cargo run --release

# Everything on SQLite, then the integration suite again on PostgreSQL when one is available.
test: test-sqlite test-postgres

test-sqlite:
	cargo test

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

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --all

release:
	cargo build --release
