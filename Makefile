# Two commands do everything on a fresh Debian machine:
#   make run    build and start `postern serve` with the embedded defaults
#   make test   install the test peers (swaks, Postfix tools, Python) and run every check
# and, on its own (needs root for the data file system; docs/SECURITY.md):
#   make soak   SOAK_MINUTES (30) of mixed load and injected faults, then the invariants
CARGO ?= cargo
PYTHON ?= build/venv/bin/python
SOAK_MINUTES ?= 30

.PHONY: run test deps-run deps-test build lint bench soak clean

run: deps-run
	$(CARGO) build --release
	./target/release/postern serve

test: deps-test lint
	$(CARGO) test --all-targets --no-fail-fast

deps-run:
	@scripts/install-deps.sh run

deps-test:
	@scripts/install-deps.sh test

build:
	$(CARGO) build --release

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

bench: deps-test
	bench/smtp.sh

soak: deps-test
	$(PYTHON) scripts/soak/soak.py --minutes $(SOAK_MINUTES)

clean:
	$(CARGO) clean
