#!/usr/bin/env bash
# `make bench-live`: the live lab against kernel baselines, all measured in the same run.
#
#   (a) direct veth: two namespaces joined by one veth pair;
#   (b) kernel routers: A - R1 - R2 - B over veth pairs, R1 and R2 forwarding;
#   (c) vmcnet: `vmcnet up topo/examples/bench-live.toml` (every link at no delay and unlimited
#       rate), iperf3 from web-1 to ec2-1.
#
# For each: iperf3 TCP with one stream and with -P 2 (the receiver's bits/s), and ping's average
# RTT. Each measurement is taken BENCH_LIVE_REPS times, the setups interleaved within each
# repetition so that the machine's noise hits all of them; the table gives the medians and each as
# a ratio to (a).
#
# vmcnet's engine runs on the last CPU while a stream keeps it busy (`vmcnet up --cpu N`), and the
# endpoints' stacks on the others: on 2 cores one stream runs about 15% faster so.
#
# Knobs: BENCH_LIVE_REPS (default 5), BENCH_LIVE_SECONDS (iperf3 -t, default 5),
# BENCH_LIVE_UP_ARGS (more arguments to `vmcnet up`; default `--cpu` the last CPU), VMCNET (the
# binary, default target/release/vmcnet).
#
# Runs as root. Every namespace it makes is named vmcbl-PID-*; nothing is added to the root
# namespace (the veth pairs are created inside the namespaces); on exit, failure or Ctrl-C it kills
# the iperf3 servers it started, deletes its namespaces and runs `vmcnet down blv`.
set -euo pipefail

die() {
    echo "bench-live: $*" >&2
    exit 1
}

# shellcheck source=scripts/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench/lib.sh"
cd "$root_dir"

REPS=${BENCH_LIVE_REPS:-5}
SECS=${BENCH_LIVE_SECONDS:-5}
TOPO=topo/examples/bench-live.toml
LAB=blv
PREFIX="vmcbl-$$-"
PING_COUNT=50
last_cpu=$(($(nproc) - 1))
UP_ARGS=${BENCH_LIVE_UP_ARGS-$([ "$last_cpu" -gt 0 ] && echo "--cpu $last_cpu")}
PING_INTERVAL=0.01

[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "BENCH_LIVE_REPS must be a positive integer, not '$REPS'"
[[ $SECS =~ ^[1-9][0-9]*$ ]] || die "BENCH_LIVE_SECONDS must be a positive integer, not '$SECS'"
[ "$(id -u)" -eq 0 ] || die "must run as root (it creates network namespaces and the live lab's TAPs)"
[ -c /dev/net/tun ] || die "/dev/net/tun is missing (load the tun module): the live lab needs it"
for tool in ip iperf3 ping; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool is missing: apt-get install -y iperf3 iputils-ping iproute2 (or make deps)"
done
[ -x "$VMCNET" ] || die "$VMCNET is missing: build it (make build) or set VMCNET"
[ -f "$TOPO" ] || die "$TOPO is missing"

# --- cleanup: everything this script made, whatever way it ends ---------------------------------

created_ns=()   # namespaces this script made
server_pids=()  # iperf3 servers this script started
lab_pid=""      # the `vmcnet up` this script started
tmp=$(mktemp -d /tmp/bench-live.XXXXXX)

cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    for pid in "${server_pids[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${server_pids[@]}"; do
        wait "$pid" 2>/dev/null
    done
    for ns in "${created_ns[@]}"; do
        # Anything still running in it (started by this script) would keep the namespace alive.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill "$pid" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null
    done
    if [ -n "$lab_pid" ]; then
        # `down` stops the lab's process (SIGTERM, then SIGKILL after 10 s) and removes what it
        # left; it only complains when there is nothing left to remove.
        if ! out=$("$VMCNET" down "$LAB" 2>&1) && [ -e "/run/vmcnet/$LAB.json" ]; then
            echo "$out" >&2
        fi
        wait "$lab_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ------------------------------------------------------------------------------------

# ns_of SETUP SIDE: sets `pre` to the command prefix that runs a command in the client ("c") or
# server ("s") namespace of a setup; both exec the command, so $! of "${pre[@]}" CMD & is CMD's.
ns_of() {
    case $1/$2 in
    a/c) pre=(ip netns exec "${PREFIX}a-client") ;;
    a/s) pre=(ip netns exec "${PREFIX}a-server") ;;
    b/c) pre=(ip netns exec "${PREFIX}b-a") ;;
    b/s) pre=(ip netns exec "${PREFIX}b-b") ;;
    c/c) pre=("$VMCNET" exec "$LAB" web-1 --) ;;
    c/s) pre=("$VMCNET" exec "$LAB" ec2-1 --) ;;
    esac
}

# The address each setup's server listens on.
declare -A server_ip=([a]=10.250.0.2 [b]=10.250.3.2 [c]=172.31.16.10)
declare -A setup_name=(
    [a]="(a) direct veth"
    [b]="(b) kernel routers x2"
    [c]="(c) vmcnet live lab"
)

new_ns() {
    ip netns add "$1"
    created_ns+=("$1")
    ip -n "$1" link set lo up
}

# veth NS1 IF1 ADDR1 NS2 IF2 ADDR2: a veth pair made inside NS1, its peer put straight into NS2.
veth() {
    ip -n "$1" link add "$2" type veth peer name "$5" netns "$4"
    ip -n "$1" addr add "$3" dev "$2"
    ip -n "$4" addr add "$6" dev "$5"
    ip -n "$1" link set "$2" up
    ip -n "$4" link set "$5" up
}

# start_server SETUP: an iperf3 server in the setup's server namespace; waits until it listens.
start_server() {
    local setup=$1 i
    ns_of "$setup" s
    "${pre[@]}" iperf3 -s -B "${server_ip[$setup]}" >"$tmp/server-$setup.log" 2>&1 &
    server_pids+=($!)
    for ((i = 0; i < 100; i++)); do
        if "${pre[@]}" ss -Hltn "sport = :5201" 2>/dev/null | grep -q .; then
            return 0
        fi
        kill -0 "${server_pids[-1]}" 2>/dev/null ||
            die "the iperf3 server of ${setup_name[$setup]} ended: $(cat "$tmp/server-$setup.log")"
        sleep 0.05
    done
    die "the iperf3 server of ${setup_name[$setup]} does not listen"
}

# bps FILE: end.sum_received.bits_per_second of an iperf3 -J report, or nothing.
bps() {
    if command -v jq >/dev/null 2>&1; then
        jq -r '.end.sum_received.bits_per_second // empty' "$1" 2>/dev/null
    else
        awk '/"sum_received"/ { s = 1 }
             s && /"bits_per_second"/ { gsub(/[^0-9.eE+-]/, "", $2); print $2; exit }' FS=: "$1"
    fi
}

# lab_alive SETUP: for (c), stop at once if the lab's process has ended (its TAPs are gone, so a
# client would wait for its timeout).
lab_alive() {
    if [ "$1" = c ] && ! kill -0 "$lab_pid" 2>/dev/null; then
        cat "$tmp/up.log" >&2
        die "vmcnet up (lab $LAB, pid $lab_pid) has ended"
    fi
}

# tcp SETUP STREAMS: one iperf3 run; prints the receiver's Gbit/s. Retries twice (a server busy
# with the end of the previous test answers "the server is busy").
tcp() {
    local setup=$1 streams=$2 try v
    ns_of "$setup" c
    for try in 1 2 3; do
        lab_alive "$setup"
        if timeout $((SECS + 15)) "${pre[@]}" \
            iperf3 -c "${server_ip[$setup]}" -t "$SECS" -P "$streams" -J >"$tmp/iperf.json" 2>&1; then
            v=$(bps "$tmp/iperf.json")
            if [ -n "$v" ]; then
                awk -v b="$v" 'BEGIN { printf "%.6f\n", b / 1e9 }'
                return 0
            fi
        fi
        sleep 0.5
    done
    echo "bench-live: iperf3 -P $streams on ${setup_name[$setup]} failed:" >&2
    cat "$tmp/iperf.json" >&2
    return 1
}

# rtt SETUP: ping's average RTT in ms.
rtt() {
    local setup=$1 out
    ns_of "$setup" c
    lab_alive "$setup"
    out=$(timeout 30 "${pre[@]}" ping -n -c "$PING_COUNT" -i "$PING_INTERVAL" -q "${server_ip[$setup]}") || {
        echo "bench-live: ping on ${setup_name[$setup]} failed:" >&2
        echo "$out" >&2
        return 1
    }
    # rtt min/avg/max/mdev = 0.021/0.030/0.061/0.007 ms
    echo "$out" | awk -F/ '/^(rtt|round-trip)/ { print $5; found = 1 } END { exit !found }'
}

# --- (a) direct veth pair -----------------------------------------------------------------------

echo "setting up (a) direct veth, (b) kernel routers, (c) vmcnet lab $LAB ($TOPO)"
new_ns "${PREFIX}a-client"
new_ns "${PREFIX}a-server"
veth "${PREFIX}a-client" v0 10.250.0.1/24 "${PREFIX}a-server" v0 10.250.0.2/24

# --- (b) kernel-router chain --------------------------------------------------------------------
# Two routed hops, as on the emulated path web-1 -> ec2-1: the NSX Edge (Tier-0) and the VPC
# router each take a routing decision (only the Edge decrements the TTL, but both route). The
# hosts' virtual switches, the Geneve underlay and the ENIs are switching, not routing, so they
# add no hop here.
#   A 10.250.1.1 -- 10.250.1.2 R1 10.250.2.1 -- 10.250.2.2 R2 10.250.3.1 -- 10.250.3.2 B
for n in a r1 r2 b; do
    new_ns "${PREFIX}b-$n"
done
veth "${PREFIX}b-a" v0 10.250.1.1/24 "${PREFIX}b-r1" v0 10.250.1.2/24
veth "${PREFIX}b-r1" v1 10.250.2.1/24 "${PREFIX}b-r2" v0 10.250.2.2/24
veth "${PREFIX}b-r2" v1 10.250.3.1/24 "${PREFIX}b-b" v0 10.250.3.2/24
ip -n "${PREFIX}b-a" route add default via 10.250.1.2
ip -n "${PREFIX}b-b" route add default via 10.250.3.1
ip -n "${PREFIX}b-r1" route add 10.250.3.0/24 via 10.250.2.2
ip -n "${PREFIX}b-r2" route add 10.250.1.0/24 via 10.250.2.1
# ip_forward is per namespace: this turns it on in R1 and R2 only.
ip netns exec "${PREFIX}b-r1" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "${PREFIX}b-r2" sysctl -qw net.ipv4.ip_forward=1

# --- (c) the vmcnet live lab --------------------------------------------------------------------

if [ -e "/run/vmcnet/$LAB.json" ]; then
    pid=$(sed -n 's/.*"pid"[^0-9]*\([0-9][0-9]*\).*/\1/p' "/run/vmcnet/$LAB.json" | head -n 1)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        die "lab $LAB is up already (pid $pid): \`$VMCNET down $LAB\` stops it"
    fi
fi
: >"$tmp/up.log"
# shellcheck disable=SC2086 # UP_ARGS is words
"$VMCNET" up "$TOPO" --lab "$LAB" $UP_ARGS >>"$tmp/up.log" 2>&1 &
lab_pid=$!
for ((i = 0; ; i++)); do
    grep -q "^lab $LAB is up" "$tmp/up.log" && break
    if ! kill -0 "$lab_pid" 2>/dev/null; then
        cat "$tmp/up.log" >&2
        die "vmcnet up ended before lab $LAB was up"
    fi
    ((i < 600)) || die "lab $LAB is not up after 60 s: $(cat "$tmp/up.log")"
    sleep 0.1
done

for s in a b c; do
    start_server "$s"
    # Warm up: neighbour resolution and the first packet's path out of the measurement.
    ns_of "$s" c
    "${pre[@]}" ping -n -c 3 -i 0.2 -W 2 "${server_ip[$s]}" >/dev/null ||
        die "${setup_name[$s]}: ${server_ip[$s]} does not answer ping"
done

# --- measure ------------------------------------------------------------------------------------

setups=(a b c)
# show REP SETUP WHAT VALUE UNIT: one measurement, as it is taken.
show() {
    printf '  rep %d/%d  %-22s %-9s %10.4f %s\n' $(($1 + 1)) "$REPS" "${setup_name[$2]}" "$3" "$4" "$5"
}
echo "measuring: $REPS repetitions; iperf3 -t $SECS with 1 and 2 streams, ping -c $PING_COUNT -i $PING_INTERVAL"
for ((r = 0; r < REPS; r++)); do
    # Rotate the order each repetition, so that no setup always runs first or last.
    order=("${setups[@]:r%3}" "${setups[@]:0:r%3}")
    for s in "${order[@]}"; do
        tcp "$s" 1 >>"$tmp/$s.p1"
        show "$r" "$s" "1 stream" "$(tail -n 1 "$tmp/$s.p1")" Gbit/s
    done
    for s in "${order[@]}"; do
        tcp "$s" 2 >>"$tmp/$s.p2"
        show "$r" "$s" "2 streams" "$(tail -n 1 "$tmp/$s.p2")" Gbit/s
    done
    for s in "${order[@]}"; do
        rtt "$s" >>"$tmp/$s.rtt"
        show "$r" "$s" "RTT" "$(tail -n 1 "$tmp/$s.rtt")" ms
    done
done

# --- report -------------------------------------------------------------------------------------

declare -A p1 p2 rt
for s in "${setups[@]}"; do
    p1[$s]=$(median <"$tmp/$s.p1")
    p2[$s]=$(median <"$tmp/$s.p2")
    rt[$s]=$(median <"$tmp/$s.rtt")
done

echo
echo "medians of $REPS; ratios to (a) direct veth"
printf '%-24s %12s %7s %12s %7s %10s %7s %11s\n' \
    setup "1 stream" ratio "2 streams" ratio RTT ratio "RTT added"
printf '%-24s %12s %7s %12s %7s %10s %7s %11s\n' \
    "" Gbit/s "" Gbit/s "" ms "" ms
for s in "${setups[@]}"; do
    awk -v name="${setup_name[$s]}" \
        -v p1="${p1[$s]}" -v p2="${p2[$s]}" -v rt="${rt[$s]}" \
        -v p1a="${p1[a]}" -v p2a="${p2[a]}" -v rta="${rt[a]}" 'BEGIN {
        printf "%-24s %12.2f %7.3f %12.2f %7.3f %10.4f %7.2f %+11.4f\n",
            name, p1, p1 / p1a, p2, p2 / p2a, rt, rt / rta, rt - rta
    }'
done

echo
echo "target: one iperf3 stream >= 0.75 of the direct veth pair; RTT added <= 0.05 ms"
awk -v p1="${p1[c]}" -v p1a="${p1[a]}" -v rt="${rt[c]}" -v rta="${rt[a]}" 'BEGIN {
    r = p1 / p1a; d = rt - rta
    printf "  one stream: vmcnet %.2f Gbit/s = %.3f of direct veth (>= 0.75): %s\n",
        p1, r, (r >= 0.75 ? "met" : "not met")
    printf "  RTT added:  vmcnet %.4f ms - direct veth %.4f ms = %+.4f ms (<= 0.05 ms): %s\n",
        rt, rta, d, (d <= 0.05 ? "met" : "not met")
}'
