#!/usr/bin/env bash
# Start or stop a local Redis Cluster for the tests: 3 masters and 3
# replicas on loopback ports 7101-7106, data in a temp dir, no persistence.
#   .ci/cluster.sh start   prints TASKFLOW_TEST_CLUSTER_ADDRS=... on success
#   .ci/cluster.sh stop    stops the nodes and removes the dir
set -euo pipefail
base=${TASKFLOW_CLUSTER_BASE_PORT:-7101}
dir=${TASKFLOW_CLUSTER_DIR:-/tmp/taskflow-cluster}
ports=$(seq "$base" $((base + 5)))

stop() {
  for p in $ports; do
    redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
}

start() {
  stop
  mkdir -p "$dir"
  for p in $ports; do
    mkdir -p "$dir/$p"
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$dir/$p/nodes.conf" --cluster-node-timeout 2000 \
      --save "" --appendonly no --dir "$dir/$p" --daemonize yes \
      --logfile "$dir/$p/redis.log" >/dev/null
  done
  for p in $ports; do
    for _ in $(seq 1 50); do
      redis-cli -p "$p" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  addrs=""
  for p in $ports; do addrs="$addrs 127.0.0.1:$p"; done
  # shellcheck disable=SC2086
  redis-cli --cluster create $addrs --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1
  for _ in $(seq 1 100); do
    if redis-cli -p "$base" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
      list=$(for p in $ports; do printf '127.0.0.1:%s,' "$p"; done)
      echo "TASKFLOW_TEST_CLUSTER_ADDRS=${list%,}"
      return 0
    fi
    sleep 0.1
  done
  echo "cluster did not become ok" >&2
  cat "$dir/create.log" >&2
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
