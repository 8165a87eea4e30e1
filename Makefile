# wgserve: the two commands a fresh machine needs are `make serve` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Mesa warns without a private runtime dir; give it one.
export XDG_RUNTIME_DIR ?= /tmp/wgserve-xdg-$(shell id -u)

CHAT ?= What is the capital of France? Answer in one sentence.

.PHONY: setup setup-test serve chat build test bench e2e fmt lint xdg

xdg:
	@mkdir -p $(XDG_RUNTIME_DIR) && chmod 700 $(XDG_RUNTIME_DIR)

# What serving needs: a Vulkan driver and the default model.
setup: xdg
	@scripts/setup

# That, plus the tools only the tests use (curl, python3-venv, Node.js >= 20, Chromium).
setup-test: xdg
	@scripts/setup --test

build: setup
	$(CARGO) build --release

# Serves the default model (configs/default.toml); the URL is printed when ready.
serve: build
	./target/release/wgserve serve --config configs/default.toml

# Streams one chat answer to the terminal.
chat: build
	./target/release/wgserve generate --chat "$(CHAT)"

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

test: setup-test
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test

# wgserve beside llama.cpp (CPU) in one run, one thing at a time: the engine
# bench (its figures also to a summary file), then benches/compare.rs builds
# llama.cpp once into a cache outside the repository (scripts/llamacpp), runs
# llama-bench, the same HTTP load on both servers, and prints one table with
# ratios, then wgserve's own figures. Without llama.cpp it says why.
BENCH_SUMMARY := target/bench-engine.json
bench: setup
	@mkdir -p target
	WGSERVE_BENCH_SUMMARY=$(CURDIR)/$(BENCH_SUMMARY) $(CARGO) bench --bench engine
	WGSERVE_BENCH_SUMMARY=$(CURDIR)/$(BENCH_SUMMARY) $(CARGO) bench --bench compare

# The chat page in headless Chromium against the release build.
e2e: build
	scripts/test-e2e target/release/wgserve
