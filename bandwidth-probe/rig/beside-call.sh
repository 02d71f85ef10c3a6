#!/usr/bin/env bash
# Benchmark (not a test): how much probing raises a live call's queueing delay. On the namespace rig
# (tbf bottleneck in the router, the same rate each way), a call-like flow runs each way
# (`examples/call-flow.rs`: 30 frames/s of CALL_SHARE × capacity, packets ≤ 1200 B sent back to
# back per frame, plus 50 audio packets/s), for 10 s alone and then while `bandwidth-probe measure`
# runs back to back (1 s apart) for 12 s. Per packet, queueing delay = one-way delay − the flow's
# smallest one-way delay (kernel receive timestamps; both ends share the host clock). The table
# compares the p95 of packets sent with no probe running against packets sent while a
# measurement ran. With RTT 100 the probe's own packets cross the link emulator (50 ms each way)
# before the same tbf queue; the call flows cross the tbf queue directly.
#
#   bash bandwidth-probe/rig/beside-call.sh          # or: make bench-probe-call
#   RATES="2" RTTS="0" CALL_SHARE=0.7 bash bandwidth-probe/rig/beside-call.sh
#
# Needs root (network namespaces) and python3. Prints a markdown table on stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
rates=${RATES:-"0.5 1 2 4"}
rtts=${RTTS:-"0 100"}
share=${CALL_SHARE:-0.5}
name="bpc$$"
port=9300

(cd "$root" && cargo build --release -q -p bandwidth-probe --bins --examples)
bin="$target/release/bandwidth-probe"
link="$target/release/examples/probe-link"
flow="$target/release/examples/call-flow"

work=$(mktemp -d)
cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  bash "$here/netns-rig.sh" down "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
head -c 32 /dev/urandom | base64 >"$work/secret"
now_us() { python3 -c 'import time; print(time.time_ns() // 1000)'; }

echo "| capacity | RTT | call each way | direction | call p95 queue delay, no probe | call p95 while probing | increase | call p99 no probe / probing | call loss no probe / probing | measurements |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for rtt in $rtts; do
  for mbit in $rates; do
    rate="$(python3 -c "print(int(float('$mbit') * 1000))")kbit"
    call_kbps=$(python3 -c "print(round(float('$mbit') * 1000 * float('$share')))")
    if [ "$rtt" = 0 ]; then
      bash "$here/netns-rig.sh" up "$name" "$rate" "$rate" >/dev/null
      probe_addr="10.77.2.2:$port"
    else
      bash "$here/netns-rig.sh" up "$name" "$rate" "$rate" \
        --link-cmd "$link --delay-ms $((rtt / 2))" --port "$port" >/dev/null
      probe_addr="10.77.1.1:$port"
    fi
    ip netns exec "$name-s" "$bin" serve --listen "10.77.2.2:$port" --secret-file "$work/secret" \
      2>/dev/null &
    server_pid=$!
    secs=24
    ip netns exec "$name-c" "$flow" recv --listen 10.77.1.2:9400 --seconds $((secs + 2)) >"$work/down.txt" &
    down_rx=$!
    ip netns exec "$name-s" "$flow" recv --listen 10.77.2.2:9401 --seconds $((secs + 2)) >"$work/up.txt" &
    up_rx=$!
    sleep 0.3
    ip netns exec "$name-s" "$flow" send --to 10.77.1.2:9400 --kbps "$call_kbps" --seconds "$secs" &
    ip netns exec "$name-c" "$flow" send --to 10.77.2.2:9401 --kbps "$call_kbps" --seconds "$secs" &
    started=$(now_us)
    sleep 10
    : >"$work/windows.txt"
    : >"$work/runs.json"
    while [ $(($(now_us) - started)) -lt 21000000 ]; do
      token=$("$bin" token --secret-file "$work/secret" --site bench)
      t0=$(now_us)
      ip netns exec "$name-c" env BANDWIDTH_PROBE_TOKEN="$token" \
        "$bin" measure --server "$probe_addr" --json >>"$work/runs.json" || true
      echo "$t0 $(now_us)" >>"$work/windows.txt"
      sleep 1
    done
    wait "$down_rx" "$up_rx" 2>/dev/null || true
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    bash "$here/netns-rig.sh" down "$name" >/dev/null
    python3 - "$work" "$mbit" "$rtt" "$call_kbps" "$started" <<'PY'
import sys
work, mbit, rtt, call, started = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
windows = [tuple(map(int, l.split())) for l in open(f"{work}/windows.txt") if l.strip()]
def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")
for direction in ["down", "up"]:
    pkts = sorted((tuple(map(int, l.split())) for l in open(f"{work}/{direction}.txt") if l.strip()),
                  key=lambda p: p[3])
    base = min(r - s for s, r, _, _ in pkts)
    # Lost packets take the send time of the packet received before them.
    lost = []
    for (s, _, _, a), (_, _, _, b) in zip(pkts, pkts[1:]):
        lost += [s] * max(0, b - a - 1)
    in_alone = lambda s: started + 2e6 <= s < started + 10e6
    in_probe = lambda s: any(a <= s <= b for a, b in windows)
    alone = [(s, (r - s - base) / 1000) for s, r, _, _ in pkts if in_alone(s)]
    probing = [(s, (r - s - base) / 1000) for s, r, _, _ in pkts if in_probe(s)]
    def loss(got, test):
        n = sum(1 for s in lost if test(s))
        return f"{100 * n / max(1, n + len(got)):.1f} %"
    lost_alone, lost_probe = loss(alone, in_alone), loss(probing, in_probe)
    qa = [q for _, q in alone]
    qp = [q for _, q in probing]
    print(f"| {mbit} Mbit/s | {rtt} ms | {call} kbit/s | {direction} | {pct(qa, .95):.1f} ms | "
          f"{pct(qp, .95):.1f} ms | {pct(qp, .95) - pct(qa, .95):+.1f} ms | "
          f"{pct(qa, .99):.1f} / {pct(qp, .99):.1f} ms | {lost_alone} / {lost_probe} | {len(windows)} |")
PY
    sleep 1
  done
done
