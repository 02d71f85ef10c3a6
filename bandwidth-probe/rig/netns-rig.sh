#!/usr/bin/env bash
# Test rig for bandwidth-probe: three network namespaces joined by veth pairs.
#
#   NAME-c (client, 10.77.1.2) ──veth── NAME-r (router, 10.77.1.1 | 10.77.2.1) ──veth── NAME-s (server, 10.77.2.2)
#
# The router forwards between 10.77.1.0/24 and 10.77.2.0/24. The bottleneck is tbf on the router's
# egress interfaces: towards the client (rc) at the down rate, towards the server (rs) at the up
# rate. tbf is never put on an end host's own interface: there it back-pressures the sending
# socket instead of queueing and dropping like a line. Burst: 10 ms of the rate, at least 3000 B;
# queue: 150 ms of the rate (drop-tail beyond).
#
# Delay and loss (the kernel has no netem): with --link-cmd, the rig starts the userspace link
# emulator (`loadtest link` or the crate's `probe-link` example, same options) in the router
# namespace, listening on 10.77.1.1:PORT and forwarding to 10.77.2.2:PORT. The client then
# addresses 10.77.1.1:PORT (the emulator) instead of the server; the emulator's upstream socket
# sends from 10.77.2.1, through tbf on rs, and the server's replies come back to it and go on to
# the client through tbf on rc. So a packet sees emulator delay/loss, then the tbf bottleneck.
#
# Usage:
#   netns-rig.sh up NAME DOWN_RATE UP_RATE [--link-cmd "CMD ARGS"] [--port PORT]
#   netns-rig.sh down NAME          # idempotent
#   netns-rig.sh status NAME
# Rates as tc understands them (2mbit, 500kbit). Run commands in a host with
#   ip netns exec NAME-c CMD   /   ip netns exec NAME-s CMD
# Needs root (CAP_NET_ADMIN). Exit code 3 when namespaces cannot be created.
set -euo pipefail

usage() {
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
name=$2
shift 2
ns_c="$name-c"
ns_r="$name-r"
ns_s="$name-s"
run_dir="${TMPDIR:-/tmp}/netns-rig-$name"

rate_bytes() {
  # tc rate -> bytes per second
  local r=${1,,}
  local num=${r%%[a-z]*}
  local unit=${r#"$num"}
  case "$unit" in
    kbit) echo $((num * 1000 / 8)) ;;
    mbit) echo $((num * 1000000 / 8)) ;;
    gbit) echo $((num * 1000000000 / 8)) ;;
    bit | "") echo $((num / 8)) ;;
    *) echo "unsupported rate unit in $1 (use bit, kbit, mbit, gbit; integers)" >&2; exit 2 ;;
  esac
}

shape() {
  local ns=$1 dev=$2 rate=$3
  local bps burst limit
  bps=$(rate_bytes "$rate")
  burst=$((bps / 100))
  [ "$burst" -ge 3000 ] || burst=3000
  limit=$((bps * 150 / 1000 + burst))
  [ "$limit" -ge 6000 ] || limit=6000
  ip netns exec "$ns" tc qdisc replace dev "$dev" root tbf rate "$rate" burst "$burst" limit "$limit"
}

down() {
  if [ -f "$run_dir/link.pid" ]; then
    kill "$(cat "$run_dir/link.pid")" 2>/dev/null || true
    rm -f "$run_dir/link.pid"
  fi
  for ns in "$ns_c" "$ns_r" "$ns_s"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$run_dir"
}

up() {
  [ $# -ge 2 ] || usage
  local down_rate=$1 up_rate=$2
  shift 2
  local link_cmd="" port=9300
  while [ $# -gt 0 ]; do
    case "$1" in
      --link-cmd) link_cmd=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  down
  if ! ip netns add "$ns_c" 2>/dev/null; then
    echo "cannot create network namespaces (need root / CAP_NET_ADMIN)" >&2
    exit 3
  fi
  ip netns add "$ns_r"
  ip netns add "$ns_s"
  ip -n "$ns_c" link add cr type veth peer name rc netns "$ns_r"
  ip -n "$ns_s" link add sr type veth peer name rs netns "$ns_r"
  ip -n "$ns_c" addr add 10.77.1.2/24 dev cr
  ip -n "$ns_r" addr add 10.77.1.1/24 dev rc
  ip -n "$ns_r" addr add 10.77.2.1/24 dev rs
  ip -n "$ns_s" addr add 10.77.2.2/24 dev sr
  for pair in "$ns_c:cr" "$ns_r:rc" "$ns_r:rs" "$ns_s:sr" "$ns_c:lo" "$ns_r:lo" "$ns_s:lo"; do
    ip -n "${pair%%:*}" link set "${pair#*:}" up
  done
  ip -n "$ns_c" route add default via 10.77.1.1
  ip -n "$ns_s" route add default via 10.77.2.1
  ip netns exec "$ns_r" sysctl -qw net.ipv4.ip_forward=1
  # Segmentation offloads off, so tbf sees the packets as sent.
  for pair in "$ns_c:cr" "$ns_r:rc" "$ns_r:rs" "$ns_s:sr"; do
    ip netns exec "${pair%%:*}" ethtool -K "${pair#*:}" tso off gso off gro off >/dev/null 2>&1 || true
  done
  shape "$ns_r" rc "$down_rate"
  shape "$ns_r" rs "$up_rate"
  mkdir -p "$run_dir"
  if [ -n "$link_cmd" ]; then
    # shellcheck disable=SC2086
    ip netns exec "$ns_r" $link_cmd --listen "10.77.1.1:$port" --forward "10.77.2.2:$port" \
      >"$run_dir/link.out" 2>"$run_dir/link.err" &
    echo $! >"$run_dir/link.pid"
    sleep 0.3
    if ! kill -0 "$(cat "$run_dir/link.pid")" 2>/dev/null; then
      echo "the link emulator did not start:" >&2
      cat "$run_dir/link.err" >&2
      exit 1
    fi
  fi
  echo "rig $name up: client 10.77.1.2 ($ns_c), router ($ns_r), server 10.77.2.2 ($ns_s); down $down_rate, up $up_rate${link_cmd:+, emulator on 10.77.1.1:$port}"
}

status() {
  for ns in "$ns_c" "$ns_r" "$ns_s"; do
    if ip netns list | grep -qw "$ns"; then
      echo "$ns: present"
    else
      echo "$ns: absent"
    fi
  done
  if ip netns list | grep -qw "$ns_r"; then
    ip netns exec "$ns_r" tc -s qdisc show dev rc || true
    ip netns exec "$ns_r" tc -s qdisc show dev rs || true
  fi
  if [ -f "$run_dir/link.pid" ] && kill -0 "$(cat "$run_dir/link.pid")" 2>/dev/null; then
    echo "link emulator running (pid $(cat "$run_dir/link.pid"))"
  fi
}

case "$cmd" in
  up) up "$@" ;;
  down) down ;;
  status) status ;;
  *) usage ;;
esac
