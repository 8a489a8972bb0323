# The commands README.md shows. `make test` is what CI runs.
.PHONY: run test lint fmt build release

run:
	cargo run --release

test:
	cargo test

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --all

release:
	cargo build --release
