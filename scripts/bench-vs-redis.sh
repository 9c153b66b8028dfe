#!/usr/bin/env bash
# redis-benchmark --cluster against a 6-node kvnode cluster (3 masters + 3 replicas) and a
# Redis cluster of the same shape (Debian's redis-server), one after the other in one run;
# prints both figures and the ratio, and the CPU time the cluster's six processes spent per
# request (user + system, from /proc: steadier than throughput on a shared machine).
#
# Then, when redis-py is installed (`pip install "redis>=5"`), 10,000 sequential SET + GET
# pairs through redis-py's RedisCluster against each, timed.
#
# Usage: bash scripts/bench-vs-redis.sh [requests at -P 16, default 4000000] [requests at -P 1, default 1000000]
# Needs redis-server, redis-cli and redis-benchmark; builds kvnode in release mode. Every
# process it starts it stops, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
requests_pipelined="${1:-4000000}"
requests_single="${2:-1000000}"
cargo build --release -p slotkv-resp --bin kvnode >/dev/null
source scripts/clusters.sh

cluster_ticks() { # base port -> CPU clock ticks (user + system) of its six processes
  local total=0 fields
  for port in $(seq "$1" $(($1 + 5))); do
    read -r -a fields <"/proc/${node_pid[$port]}/stat"
    total=$((total + fields[13] + fields[14]))
  done
  echo "$total"
}
ticks_per_second="$(getconf CLK_TCK)"

rate() { # port pipeline requests test -> "requests/s µs-of-CPU/request"
  local before after rps
  before="$(cluster_ticks "$1")"
  rps="$(redis-benchmark --cluster -h 127.0.0.1 -p "$1" -t "$4" -d 64 -c 50 -r 100000 -P "$2" -n "$3" -q 2>/dev/null \
    | tr '\r' '\n' | grep -E "^$(echo "$4" | tr a-z A-Z): [0-9.]+ requests" | tail -1 | awk '{print $2}')"
  after="$(cluster_ticks "$1")"
  echo "$rps $(awk -v t=$((after - before)) -v hz="$ticks_per_second" -v n="$3" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
}

start_cluster kvnode 7300
start_cluster redis 7400
printf '%-6s %-4s %14s %14s %7s %12s %12s\n' test P kvnode redis ratio "kvnode cpu" "redis cpu"
for pipeline in 16 1; do
  requests=$([ "$pipeline" = 16 ] && echo "$requests_pipelined" || echo "$requests_single")
  for test in set get; do
    read -r ours our_cpu <<<"$(rate 7300 "$pipeline" "$requests" "$test")"
    read -r theirs their_cpu <<<"$(rate 7400 "$pipeline" "$requests" "$test")"
    ratio="$(awk -v a="$ours" -v b="$theirs" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
    printf '%-6s %-4s %14s %14s %7s %10s µs %10s µs\n' "$test" "$pipeline" "$ours" "$theirs" "$ratio" "$our_cpu" "$their_cpu"
  done
done
if python3 -c "import redis.cluster" 2>/dev/null; then
  py_seconds() { # port -> seconds for 10,000 SET + GET pairs through RedisCluster
    python3 - "$1" <<'PY'
import sys, time
from redis.cluster import RedisCluster
client = RedisCluster(host="127.0.0.1", port=int(sys.argv[1]))
started = time.perf_counter()
for i in range(10_000):
    client.set(f"py:{i}", "v" * 64)
    assert client.get(f"py:{i}") == b"v" * 64
print(f"{time.perf_counter() - started:.2f}")
PY
  }
  ours="$(py_seconds 7300)"
  theirs="$(py_seconds 7400)"
  ratio="$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", b / a }')"
  printf '%-11s %14s %14s %7s\n' redis-py "${ours} s" "${theirs} s" "$ratio"
else
  echo "redis-py not installed (pip install \"redis>=5\"): its comparison skipped"
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
