# Two commands do everything on a fresh Debian machine:
#   make run    build and start `postern serve` with the embedded defaults
#   make test   install the test peers (swaks, Postfix tools, Python) and run every check
# and, on its own (needs root for the data file system; docs/SECURITY.md):
#   make soak   SOAK_MINUTES (30) of mixed load and injected faults, then the invariants
#   make fuzz   build the fuzz targets and run each for FUZZ_SECONDS (docs/SECURITY.md)
CARGO ?= cargo
PYTHON ?= build/venv/bin/python
SOAK_MINUTES ?= 30

.PHONY: run test deps-run deps-test deps-fuzz build lint bench soak fuzz clean

# Seconds of fuzzing per target for `make fuzz`.
FUZZ_SECONDS ?= 300

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

deps-fuzz:
	@scripts/install-deps.sh fuzz

# Stable toolchain, libFuzzer through libfuzzer-sys; artifacts in fuzz/artifacts/.
fuzz: deps-fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

bench: deps-test
	bench/smtp.sh

soak: deps-test
	$(PYTHON) scripts/soak/soak.py --minutes $(SOAK_MINUTES)

clean:
	$(CARGO) clean
