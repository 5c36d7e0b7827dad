#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS (default 60) on one core, starting from
# the seeds kept in fuzz/seeds/<target> (never written to); what the fuzzer finds
# goes to fuzz/target/corpus/<target>, a crash to fuzz/artifacts/<target>/ and
# a non-zero exit. Installs nightly Rust and cargo-fuzz when they are missing.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     # e.g. fuzz/run.sh 600 head
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

for target in "${targets[@]}"; do
  echo "== $target: ${seconds}s"
  mkdir -p "target/corpus/$target"
  # Debug assertions: an arithmetic overflow is a finding too. A single input
  # taking over 5 s counts as a hang.
  cargo +nightly fuzz run --debug-assertions "$target" \
    "target/corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=5 -print_final_stats=1
done
