#!/usr/bin/env bash
# The real Redis tools against kvnode processes, step by step (run by .ci/run): starts 6
# kvnodes on 127.0.0.1 and checks that
#   redis-cli --cluster create ... --cluster-replicas 1 forms 3 masters + 3 replicas,
#   --cluster check passes (all 16384 slots covered, no open slot, no warning),
#   redis-cli -c writes and reads through every node,
#   --cluster reshard of 1,000 slots holding keys, --cluster rebalance,
#   --cluster add-node (as master and as replica) and del-node keep every key readable,
#   redis-benchmark --cluster -t set,get -n 100000 runs without an error,
#   kill -9 of a master gets its replica promoted, and check passes again (the killed node
#   restarted rejoins as a replica).
# Every process it starts it stops, by PID. Needs redis-cli and redis-benchmark
# (Debian's redis-tools) and builds kvnode itself.
#
#   bash scripts/compat.sh              # ports 21000-21007, buses 31000-31007 (below the
#                                       # ephemeral range, which outbound connections take)
#   COMPAT_BASE_PORT=22000 bash scripts/compat.sh
set -euo pipefail
cd "$(dirname "$0")/.."
base="${COMPAT_BASE_PORT:-21000}"
keys=2000

cargo build --release --quiet -p slotkv-resp --bin kvnode
source scripts/clusters.sh
if [ -d /dev/shm ]; then
  # Every CLUSTER SETSLOT waits for an fsync of nodes.conf: keep the reshard off a busy disk.
  rm -rf "$work"
  work="$(mktemp -d /dev/shm/slotkv-compat.XXXXXX)"
fi

step() { echo "== [$SECONDS s] $*"; }
fail() {
  echo "FAILED: $*" >&2
  for log in "$work"/*.log; do
    echo "--- $log" >&2
    tail -n 20 "$log" >&2
  done
  exit 1
}
# The node's id, from its own CLUSTER MYID.
id_of() { redis-cli -p "$1" cluster myid; }
# Polls until `--cluster check` through $base is clean, at most 30 s.
wait_clean() { # after
  local output
  for _ in $(seq 1 150); do
    output="$(redis-cli --cluster check "127.0.0.1:$base" 2>&1 || true)"
    if grep -q "All nodes agree about slots configuration" <<<"$output" &&
      grep -q "All 16384 slots covered" <<<"$output" &&
      ! grep -qE "\[WARNING\]|\[ERR\]" <<<"$output"; then
      return 0
    fi
    sleep 0.2
  done
  echo "$output" >&2
  fail "--cluster check is not clean after $1"
}
# Polls until node $base knows node $1 (a MEET takes a few gossip rounds), at most 30 s.
wait_known() { # port
  local id
  id="$(id_of "$1")"
  for _ in $(seq 1 150); do
    redis-cli -p "$base" cluster nodes | grep -q "^$id " && return 0
    sleep 0.2
  done
  fail "node $base never learned of node $1 ($id)"
}
# Waits until node $1 says cluster_state:ok. A master that just started refuses writes and
# imports for its writable delay (2 s, as Redis does) and until it sees the whole slot map.
wait_ok() { # port
  for _ in $(seq 1 150); do
    redis-cli -p "$1" cluster info | grep -q "^cluster_state:ok" && return 0
    sleep 0.2
  done
  fail "node $1 never reached cluster_state:ok"
}
# Reads every key back through node $1 (following redirections) and compares its value.
check_keys() { # port after
  local wrong
  wrong="$(for i in $(seq 1 "$keys"); do echo "GET compat:$i"; done |
    redis-cli -c -p "$1" | grep -v '^-> Redirected' |
    awk '{ if ($0 != "v" NR) bad++ } END { print bad + 0 " of " NR }')"
  [ "$wrong" = "0 of $keys" ] || fail "after $2, keys read back wrong or missing through $1: $wrong"
}

step "start 6 kvnodes on ports $base-$((base + 5))"
addresses=()
for i in 0 1 2 3 4 5; do
  start_node kvnode $((base + i)) --cluster-node-timeout 2000
  addresses+=("127.0.0.1:$((base + i))")
done

step "redis-cli --cluster create --cluster-replicas 1"
redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$work/create.out" 2>&1 ||
  { cat "$work/create.out"; fail "create"; }
wait_clean "create"
masters="$(redis-cli -p "$base" cluster nodes | grep -c master)"
[ "$masters" = 3 ] || fail "create made $masters masters"

step "redis-cli -c: a key written and read through every node"
for i in 0 1 2 3 4 5; do
  port=$((base + i))
  redis-cli -c -p "$port" set "compat:node:$port" "from-$port" | grep -q OK || fail "SET through $port"
done
for i in 0 1 2 3 4 5; do
  port=$((base + i))
  reader=$((base + (i + 1) % 6))
  value="$(redis-cli -c -p "$reader" get "compat:node:$port" | tail -n 1)"
  [ "$value" = "from-$port" ] || fail "GET compat:node:$port through $reader: $value"
done
for i in $(seq 1 "$keys"); do echo "SET compat:$i v$i"; done | redis-cli -c -p "$base" >/dev/null
check_keys $((base + 1)) "writing $keys keys"

step "--cluster reshard of 1000 slots"
from="$(id_of "$base")"
to="$(id_of $((base + 1)))"
started=$(date +%s%N)
redis-cli --cluster reshard "127.0.0.1:$base" --cluster-from "$from" --cluster-to "$to" \
  --cluster-slots 1000 --cluster-yes >"$work/reshard.out" 2>&1 ||
  { tail -n 20 "$work/reshard.out"; fail "reshard"; }
echo "   1000 slots in $(( ($(date +%s%N) - started) / 1000000 )) ms"
wait_clean "reshard"
check_keys $((base + 2)) "reshard"

step "--cluster rebalance"
redis-cli --cluster rebalance "127.0.0.1:$base" --cluster-threshold 1 >"$work/rebalance.out" 2>&1 ||
  { tail -n 20 "$work/rebalance.out"; fail "rebalance"; }
wait_clean "rebalance"
check_keys "$base" "rebalance"

step "--cluster add-node, as a master and as its replica"
new_master=$((base + 6))
new_replica=$((base + 7))
start_node kvnode "$new_master" --cluster-node-timeout 2000
start_node kvnode "$new_replica" --cluster-node-timeout 2000
redis-cli --cluster add-node "127.0.0.1:$new_master" "127.0.0.1:$base" >"$work/add.out" 2>&1 ||
  { cat "$work/add.out"; fail "add-node of a master"; }
wait_known "$new_master"
wait_clean "add-node of a master"
new_master_id="$(id_of "$new_master")"
redis-cli --cluster add-node "127.0.0.1:$new_replica" "127.0.0.1:$base" --cluster-slave \
  --cluster-master-id "$new_master_id" >"$work/add-replica.out" 2>&1 ||
  { cat "$work/add-replica.out"; fail "add-node of a replica"; }
wait_known "$new_replica"
wait_clean "add-node of a replica"
wait_ok "$new_master"
# A small weight: the new master gets a few hundred slots, which keeps the run short.
redis-cli --cluster rebalance "127.0.0.1:$base" --cluster-use-empty-masters \
  --cluster-weight "$new_master_id=0.1" >"$work/rebalance-new.out" 2>&1 || { tail -n 20 "$work/rebalance-new.out"; fail "rebalance onto the new master"; }
wait_clean "rebalance onto the new master"
held="$(redis-cli -p "$base" cluster nodes | awk -v id="$new_master_id" '$1 == id { n = 0; for (i = 9; i <= NF; i++) { split($i, r, "-"); n += (r[2] == "" ? 1 : r[2] - r[1] + 1) } print n }')"
[ "${held:-0}" -gt 0 ] || fail "the new master got no slot from rebalance"
check_keys "$new_replica" "add-node and rebalance"

step "--cluster del-node of the new master (emptied by reshard) and of its replica"
redis-cli --cluster reshard "127.0.0.1:$base" --cluster-from "$new_master_id" --cluster-to "$from" \
  --cluster-slots "$held" --cluster-yes >"$work/empty.out" 2>&1 || { tail -n 20 "$work/empty.out"; fail "emptying the new master"; }
wait_clean "emptying the new master"
for port in "$new_replica" "$new_master"; do
  redis-cli --cluster del-node "127.0.0.1:$base" "$(id_of "$port")" >"$work/del-$port.out" 2>&1 ||
    { cat "$work/del-$port.out"; fail "del-node of $port"; }
done
for _ in $(seq 1 100); do
  known="$(redis-cli -p "$base" cluster info | tr -d '\r' | awk -F: '$1 == "cluster_known_nodes" { print $2 }')"
  [ "$known" = 6 ] && break
  sleep 0.2
done
[ "$known" = 6 ] || fail "after del-node the cluster knows $known nodes"
wait_clean "del-node"
check_keys $((base + 3)) "del-node"

step "redis-benchmark --cluster -t set,get -n 100000"
redis-benchmark --cluster -p "$base" -t set,get -n 100000 -q >"$work/bench.out" 2>&1 ||
  { cat "$work/bench.out"; fail "redis-benchmark"; }
grep -qi "error" "$work/bench.out" && { cat "$work/bench.out"; fail "redis-benchmark reported errors"; }
summary="$(tr '\r' '\n' <"$work/bench.out" | grep -E "^(SET|GET): [0-9.]+ requests per second" || true)"
[ "$(wc -l <<<"$summary")" = 2 ] || { cat "$work/bench.out"; fail "redis-benchmark printed no SET and GET summary"; }
sed 's/^/   /' <<<"$summary"

step "kill -9 of a master: its replica is promoted"
victim=$((base + 2))
victim_id="$(id_of "$victim")"
replica_line="$(redis-cli -p "$base" cluster nodes | awk -v id="$victim_id" '$4 == id { print $1 " " $2 }' | head -n 1)"
[ -n "$replica_line" ] || fail "the master on $victim has no replica"
replica_id="${replica_line%% *}"
kill -9 "${node_pid[$victim]}"
wait "${node_pid[$victim]}" 2>/dev/null || true
promoted=no
for _ in $(seq 1 150); do
  if redis-cli -p "$base" cluster nodes | awk -v id="$replica_id" '$1 == id' | grep -q master; then
    promoted=yes
    break
  fi
  sleep 0.2
done
[ "$promoted" = yes ] || fail "the replica of the killed master was not promoted"
for _ in $(seq 1 150); do
  redis-cli -p "$base" cluster info | grep -q "cluster_state:ok" && break
  sleep 0.2
done
check_keys "$base" "the failover"
step "the killed node restarted rejoins as a replica; check passes"
start_node kvnode "$victim" --cluster-node-timeout 2000
for _ in $(seq 1 150); do
  redis-cli -p "$victim" cluster nodes | grep myself | grep -q slave && break
  sleep 0.2
done
redis-cli -p "$victim" cluster nodes | grep myself | grep -q slave || fail "the restarted node is not a replica"
wait_clean "the failover and restart"
check_keys "$victim" "the failover and restart"

echo "compat: every step passed"
