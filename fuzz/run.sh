#!/usr/bin/env bash
# Runs every fuzz target for a while (needs the nightly toolchain and cargo-fuzz).
#
# Usage: bash fuzz/run.sh [seconds per target, default 60] [targets...]
# Crashes are written to fuzz/artifacts/<target>/; copy each into fuzz/regressions/<target>/
# so `cargo test` replays it (cluster/tests/fuzz_corpus.rs, resp/tests/fuzz_corpus.rs) once it is fixed. Prints the
# executions each target reached. FUZZ_WORK_DIR keeps the grown corpus and logs; FUZZ_RUNS=N
# also stops a target after N executions (whichever of the two bounds comes first).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(bus_message bulk_frame migration_frame request response nodes_conf snapshot hello envelope frames tcp_handshake resp_request)
fi

work="${FUZZ_WORK_DIR:-$(mktemp -d)}"
runs_bound=()
if [ -n "${FUZZ_RUNS:-}" ]; then
  runs_bound=("-runs=$FUZZ_RUNS")
fi
for target in "${targets[@]}"; do
  # New inputs go to a scratch corpus; the repository's seeds are read, never grown.
  mkdir -p "$work/$target"
  log="$work/$target.log"
  # -rss_limit_mb bounds memory; -max_len bounds inputs (every decoder bounds lengths itself).
  # No sanitizer by default: the decoders are safe Rust, where AddressSanitizer finds
  # nothing and costs 4-7x the executions. The one unsafe code an input reaches is the
  # engine's entry allocation (engine/src/entry.rs, through the snapshot target): run that
  # with FUZZ_SANITIZER=address to check it.
  if ! cargo +nightly fuzz run --release --sanitizer "${FUZZ_SANITIZER:-none}" "$target" "$work/$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" "${runs_bound[@]}" -rss_limit_mb=2048 -max_len=65536 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz target $target failed (inputs in fuzz/artifacts/$target)" >&2
    exit 1
  fi
  runs="$(grep -o 'Done [0-9]* runs' "$log" | tail -1 || true)"
  echo "$target: ${runs:-no summary} in ${seconds}s"
done
