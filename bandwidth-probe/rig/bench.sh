#!/usr/bin/env bash
# Benchmark (not a test) of bandwidth-probe on the namespace rig: at 0.5, 1, 2, 4, 10 and 20 Mbit/s
# (tbf in the router, the same rate each way), with 0 and 100 ms round trip (the link emulator in
# the router adds 50 ms each way), RUNS probe measurements per case, and iperf3 UDP for 10 s
# client → server at the same capacity for comparison. Prints a markdown table on stdout.
#
#   bash bandwidth-probe/rig/bench.sh            # or: make bench-probe
#   RUNS=5 RATES="2 4" RTTS="0" bash bandwidth-probe/rig/bench.sh
#
# iperf3 is UDP only through the userspace emulator, and its TCP control connection would need a
# relay there, so iperf3 runs across the tbf router directly (0 ms): a UDP sender at a fixed rate
# sends the same bytes whatever the RTT, so the 100 ms rows compare with the same figure.
# Needs root (network namespaces), python3, and iperf3 (installed with apt-get when missing).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
runs=${RUNS:-3}
rates=${RATES:-"0.5 1 2 4 10 20"}
rtts=${RTTS:-"0 100"}
name="bpb$$"
port=9300

if ! command -v iperf3 >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null; }
fi
(cd "$root" && cargo build --release -q -p bandwidth-probe --bins --examples)
bin="$target/release/bandwidth-probe"
link="$target/release/examples/probe-link"

work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  bash "$here/netns-rig.sh" down "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
head -c 32 /dev/urandom | base64 >"$work/secret"

tc_rate() { python3 -c "print(f'{int(float(\"$1\")*1000)}kbit')"; }

declare -A iperf_bytes iperf_kbps
echo "| capacity | RTT | probe down (err) | probe up (err) | wall down / up | probe bytes down / up | confidence | iperf3 UDP rate | iperf3 bytes | probe bytes % of iperf3 |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for rtt in $rtts; do
  for mbit in $rates; do
    rate=$(tc_rate "$mbit")
    if [ "$rtt" = 0 ]; then
      bash "$here/netns-rig.sh" up "$name" "$rate" "$rate" >/dev/null
      target_addr="10.77.2.2:$port"
    else
      bash "$here/netns-rig.sh" up "$name" "$rate" "$rate" \
        --link-cmd "$link --delay-ms $((rtt / 2))" --port "$port" >/dev/null
      target_addr="10.77.1.1:$port"
    fi
    ip netns exec "$name-s" "$bin" serve --listen "10.77.2.2:$port" --secret-file "$work/secret" \
      2>/dev/null &
    server_pid=$!
    sleep 0.3
    : >"$work/runs.json"
    for _ in $(seq "$runs"); do
      token=$("$bin" token --secret-file "$work/secret" --site bench)
      ip netns exec "$name-c" env BANDWIDTH_PROBE_TOKEN="$token" \
        "$bin" measure --server "$target_addr" --json >>"$work/runs.json"
      echo "$rtt $mbit $(tail -1 "$work/runs.json")" >>"$work/raw.txt"
      sleep 0.3
    done
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    if [ -z "${iperf_bytes[$mbit]:-}" ]; then
      if [ "$rtt" != 0 ]; then
        bash "$here/netns-rig.sh" up "$name" "$rate" "$rate" >/dev/null
      fi
      ip netns exec "$name-s" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
      sleep 0.5
      ip netns exec "$name-c" iperf3 -c 10.77.2.2 -p 5201 -u -b "${rate%bit}" -l 1200 -t 10 -J \
        >"$work/iperf.json" 2>/dev/null || true
      read -r ib ik < <(python3 - "$work/iperf.json" <<'PY'
import json, sys
try:
    e = json.load(open(sys.argv[1]))["end"]
    sent = e.get("sum_sent", e.get("sum", {}))
    recv = e.get("sum_received", e.get("sum", {}))
    print(int(sent["bytes"]), round(recv["bits_per_second"] / 1000))
except Exception:
    print(0, 0)
PY
)
      iperf_bytes[$mbit]=$ib
      iperf_kbps[$mbit]=$ik
      wait 2>/dev/null || true
    fi
    bash "$here/netns-rig.sh" down "$name" >/dev/null
    python3 - "$work/runs.json" "$mbit" "$rtt" "${iperf_bytes[$mbit]}" "${iperf_kbps[$mbit]}" <<'PY'
import json, sys, statistics
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cap = float(sys.argv[2]) * 1000
rtt, ib, ik = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def col(key):
    v = [r[key] for r in runs]
    errs = [100 * (x - cap) / cap for x in v]
    worst = max(errs, key=abs)
    return f"{statistics.median(v):.0f} kbit/s (median; worst {worst:+.1f} %)"
wd = max(r["down_ms"] for r in runs)
wu = max(r["up_ms"] for r in runs)
bd = max(r["bytes_received"] for r in runs)
bu = max(r["bytes_sent"] for r in runs)
conf = min(r["confidence"] for r in runs)
pct = f"{100 * max(bd, bu) / ib:.1f} %" if ib else "n/a"
print(f"| {sys.argv[2]} Mbit/s | {rtt} ms | {col('down_kbps')} | {col('up_kbps')} | "
      f"{wd:.0f} / {wu:.0f} ms (max) | {bd} / {bu} B (max) | {conf:.2f} (min) | "
      f"{ik} kbit/s | {ib} B | {pct} |")
PY
  done
done
echo
echo "Raw probe output (RTT ms, capacity Mbit/s, JSON):"
echo '```'
cat "$work/raw.txt"
echo '```'
