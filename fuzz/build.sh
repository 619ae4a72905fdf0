#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer (libfuzzer-sys) on the stable toolchain: the
# flags `cargo fuzz build --sanitizer none` passes (cargo-fuzz 0.13, src/project.rs), none
# of which needs nightly. No AddressSanitizer: it needs -Zsanitizer, that is nightly.
# Binaries: fuzz/target/<host triple>/release/<target>.
set -euo pipefail
cd "$(dirname "$0")"
triple=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="$PWD/target"
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cllvm-args=-sanitizer-coverage-stack-depth \
 -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
 --cfg fuzzing"
# --target keeps these flags away from build scripts and proc macros, which are not
# linked with libFuzzer.
exec cargo build --release --locked --target "$triple" --bins "$@"
