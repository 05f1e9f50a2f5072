#!/usr/bin/env bash
# `make bench-drills`: the wall time of every shipped drill and of the one-hour drill
# (scripts/bench/hour.toml), release build, medians of BENCH_DRILLS_REPS (3) runs each, with the
# virtual time each covers per second of wall time.
#
# Knobs: BENCH_DRILLS_REPS, VMCNET (the binary, default target/release/vmcnet).
set -euo pipefail

# shellcheck source=scripts/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench/lib.sh"
cd "$root_dir"
REPS=${BENCH_DRILLS_REPS:-3}
[[ -x $VMCNET ]] || { echo "bench-drills: no $VMCNET (make build)" >&2; exit 1; }
trap 'exit 130' INT
trap 'exit 143' TERM

# The topology each drill is written for (its file's usage line), or the default one.
topology_of() {
    local t
    t=$(grep -o 'vmcnet drill [^ ]*' "$1" | head -1 | awk '{ print $3 }')
    echo "${t:-topo/default.toml}"
}

printf '%-28s %12s %14s %16s  %s\n' "drill" "median ms" "virtual s" "virtual s/wall s" "result"
for drill in scripts/drills/*.toml scripts/bench/hour.toml; do
    topo=$(topology_of "$drill")
    times=""
    virtual=""
    result=passed
    for _ in $(seq "$REPS"); do
        t0=$(date +%s%N)
        # A drill that fails is still timed, and said to have failed.
        out=$("$VMCNET" drill "$topo" "$drill" 2>&1) || result=FAILED
        t1=$(date +%s%N)
        times+="$(((t1 - t0) / 1000)) "
        virtual=$(grep -o '[0-9.]* s of virtual time' <<<"$out" | awk '{ s += $1 } END { print s + 0 }')
    done
    m=$(tr ' ' '\n' <<<"$times" | grep . | median)
    awk -v d="$(basename "$drill" .toml)" -v m="$m" -v v="$virtual" -v r="$result" \
        'BEGIN { printf "%-28s %12.1f %14.1f %16.0f  %s\n", d, m / 1000, v, v / (m / 1000000), r }'
done
