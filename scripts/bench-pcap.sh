#!/usr/bin/env bash
# `make bench-pcap`: what `--pcap` costs in wall time, against the same drill without it, all
# measured in the same run.
#
# Two drills on the default lab: the smoke drill (about 110 MB of capture) and a 50 MiB TCP
# transfer (scripts/bench/bulk-52mb.toml, about 480 MB). Each runs without a capture, with
# `--pcap FILE.pcapng` (one file) and with `--pcap DIR` (a file per link). The runs are
# interleaved, each after a `sync` so that no earlier capture is still being written back; the
# table gives the median wall time of each and its ratio to the run without a capture.
#
# Knobs: BENCH_PCAP_REPS (default 15), BENCH_PCAP_DRILLS (drill files, default the two above),
# VMCNET (the binary, default target/release/vmcnet).
# Its files go to a temporary directory, removed on exit.
set -euo pipefail

# shellcheck source=scripts/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench/lib.sh"
cd "$root_dir"
REPS=${BENCH_PCAP_REPS:-15}
[[ -x $VMCNET ]] || { echo "bench-pcap: no $VMCNET (make build)" >&2; exit 1; }

scratch=$(mktemp -d /tmp/vmcnet-bench-pcap.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One run's wall time in microseconds.
run_us() {
    rm -rf "$scratch/out.pcapng" "$scratch/dir"
    sync
    local t0 t1
    t0=$(date +%s%N)
    "$VMCNET" drill topo/default.toml "$@" >/dev/null
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000))
}

printf '%-34s %12s %8s\n' "drill, capture" "median ms" "ratio"
for drill in ${BENCH_PCAP_DRILLS:-scripts/drills/smoke.toml scripts/bench/bulk-52mb.toml}; do
    declare -A times=()
    for _ in $(seq "$REPS"); do
        times[none]+="$(run_us "$drill") "
        times[pcapng]+="$(run_us "$drill" --pcap "$scratch/out.pcapng") "
        times[dir]+="$(run_us "$drill" --pcap "$scratch/dir") "
    done
    base=$(tr ' ' '\n' <<<"${times[none]}" | grep . | median)
    for kind in none pcapng dir; do
        m=$(tr ' ' '\n' <<<"${times[$kind]}" | grep . | median)
        awk -v d="$(basename "$drill" .toml), $kind" -v m="$m" -v b="$base" \
            'BEGIN { printf "%-34s %12.1f %8.2f\n", d, m / 1000, m / b }'
    done
    unset times
done
