#!/usr/bin/env bash
# redis-cli --cluster reshard of N slots holding keys, on a 6-node kvnode cluster
# (3 masters + 3 replicas) and on a Redis cluster of the same shape (Debian's redis-server),
# one after the other in one run: writes K keys (op:0 .. op:K-1) through `redis-cli -c`,
# moves N slots from the first master to the second, checks the cluster, and prints the
# keys moved, the time, keys/s and ms per slot of each, and the ratio.
#
# Usage: bash scripts/reshard-vs-redis.sh [slots, default 1000] [keys, default 20000]
# Needs redis-server and redis-cli; builds kvnode in release mode. Every process it starts
# it stops, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
slots="${1:-1000}"
keys="${2:-20000}"
cargo build --release -p slotkv-resp --bin kvnode >/dev/null
source scripts/clusters.sh

reshard() { # base_port -> "keys seconds"
  local base="$1"
  seq 0 $((keys - 1)) | awk '{ print "SET op:" $1 " value-" $1 }' | redis-cli -c -p "$base" >/dev/null
  local from to before after started ended
  from="$(redis-cli -p "$base" cluster myid)"
  to="$(redis-cli -p $((base + 1)) cluster myid)"
  before="$(redis-cli -p $((base + 1)) dbsize)"
  started="$(date +%s.%N)"
  redis-cli --cluster reshard "127.0.0.1:$base" --cluster-from "$from" --cluster-to "$to" \
    --cluster-slots "$slots" --cluster-yes >"$work/reshard-$base.log" 2>&1
  ended="$(date +%s.%N)"
  after="$(redis-cli -p $((base + 1)) dbsize)"
  if redis-cli --cluster check "127.0.0.1:$base" 2>&1 | grep -qE "\[(WARNING|ERR)\]"; then
    echo "check after the reshard on port $base is not clean" >&2
    exit 1
  fi
  echo "$((after - before)) $(awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.2f", b - a }')"
}

start_cluster kvnode 7300
start_cluster redis 7400
read -r ours_keys ours_seconds <<<"$(reshard 7300)"
read -r theirs_keys theirs_seconds <<<"$(reshard 7400)"
printf '%-7s %6s %7s %9s %9s\n' cluster keys seconds keys/s ms/slot
for row in "kvnode $ours_keys $ours_seconds" "redis $theirs_keys $theirs_seconds"; do
  set -- $row
  awk -v name="$1" -v moved="$2" -v seconds="$3" -v slots="$slots" \
    'BEGIN { printf "%-7s %6d %7.2f %9.0f %9.1f\n", name, moved, seconds, moved / seconds, seconds * 1000 / slots }'
done
awk -v a="$ours_seconds" -v b="$theirs_seconds" 'BEGIN { printf "time ratio kvnode / redis: %.2f\n", a / b }'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
