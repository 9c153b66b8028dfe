# Sourced by the scripts that compare kvnode with Redis: starts a 6-node cluster
# (3 masters + 3 replicas) of kvnode or of Debian's redis-server on 127.0.0.1 and stops
# every process it started, by PID, on exit.
#
# Before sourcing: `cd` to the repository and build kvnode (in cargo's target directory:
# $CARGO_TARGET_DIR when set, else ./target).
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
kvnode="$target_dir/release/kvnode"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Starts one node of `kind` (kvnode or redis) on `port` with its files in $work/<kind>-<port>
# and any further flags, records its PID in `pids` (and in `node_pid[port]`) and waits until
# it answers PING.
declare -A node_pid
start_node() { # kind port [flags...]
  local kind="$1" port="$2"
  shift 2
  mkdir -p "$work/$kind-$port"
  if [ "$kind" = kvnode ]; then
    "$kvnode" --port "$port" --dir "$work/$kind-$port" --loglevel warning "$@" \
      >>"$work/$kind-$port.log" 2>&1 &
  else
    redis-server --port "$port" --cluster-enabled yes --dir "$work/$kind-$port" \
      --save '' --appendonly no --daemonize no --logfile "$work/$kind-$port.log" "$@" &
  fi
  pids+=("$!")
  node_pid[$port]=$!
  local tries=0
  until redis-cli -p "$port" ping >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ]; then
      echo "$kind on port $port never answered PING; its log:" >&2
      cat "$work/$kind-$port.log" >&2
      return 1
    fi
    sleep 0.1
  done
}

start_cluster() { # kind base_port
  local kind="$1" base="$2" addresses=()
  for i in 0 1 2 3 4 5; do
    start_node "$kind" $((base + i))
    addresses+=("127.0.0.1:$((base + i))")
  done
  redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  until redis-cli --cluster check "127.0.0.1:$base" 2>/dev/null | grep -q "All 16384 slots covered"; do sleep 0.2; done
  sleep 2
}
