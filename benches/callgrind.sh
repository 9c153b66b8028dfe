#!/usr/bin/env bash
# Instructions (and simulated cache misses) per engine operation under valgrind's callgrind:
# a measure that other builds on the machine do not disturb. Runs `examples/engine_ops` for
# each target and operation, collects only `measured_ops`, subtracts the loop's own cost (the
# `noop` target) and prints per-operation figures.
#
# Usage: bash benches/callgrind.sh [operations, default 100000] [targets...]
# Env: OPS="get_hit get_miss set mix_90get_10set" to choose operations; CACHE_SIM=1 adds the
# simulated D1 and last-level misses per operation (several times slower).
set -euo pipefail
cd "$(dirname "$0")/.."
operations="${1:-100000}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(slotkv rwlock_hashmap per_slot_rwlock_hashmap)
fi
ops=(${OPS:-get_hit get_miss set mix_90get_10set})
cache_sim="${CACHE_SIM:-0}"

cargo build --release --example engine_ops >&2
binary=target/release/examples/engine_ops
out_dir="$(mktemp -d)"
trap 'rm -rf "$out_dir"' EXIT

# Prints "Ir D1mr DLmr" (the last two 0 without the cache simulation) collected in one run.
events() {
  local file="$out_dir/$1.$2.out"
  local sim=()
  if [ "$cache_sim" = 1 ]; then sim=(--cache-sim=yes); fi
  valgrind --tool=callgrind --callgrind-out-file="$file" --collect-atstart=no \
    --toggle-collect='*measured_ops*' "${sim[@]}" "$binary" "$1" "$2" "$operations" \
    >/dev/null 2>&1
  awk '/^events:/ { for (i = 2; i <= NF; i++) name[i - 1] = $i }
       /^totals:/ { for (i = 2; i <= NF; i++) value[name[i - 1]] = $i }
       END { printf "%d %d %d\n", value["Ir"], value["D1mr"] + value["D1mw"], value["DLmr"] + value["DLmw"] }' "$file"
}

printf '%-26s %-16s %12s %12s %12s\n' target op "instr/op" "D1 miss/op" "LL miss/op"
for op in "${ops[@]}"; do
  read -r base_ir base_d1 base_ll < <(events noop "$op")
  for target in "${targets[@]}"; do
    read -r ir d1 ll < <(events "$target" "$op")
    awk -v t="$target" -v o="$op" -v n="$operations" -v ir="$ir" -v bi="$base_ir" \
      -v d1="$d1" -v bd="$base_d1" -v ll="$ll" -v bl="$base_ll" \
      'BEGIN { printf "%-26s %-16s %12.1f %12.2f %12.2f\n", t, o, (ir - bi) / n, (d1 - bd) / n, (ll - bl) / n }'
  done
done
