# Shared by the bench scripts (sourced, not run): where the vmcnet binary is, and medians.
#
# After sourcing: root_dir is the repository, VMCNET an absolute path to the binary (the
# caller's VMCNET, relative to where it was called from, or target/release/vmcnet).

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VMCNET=${VMCNET:-$root_dir/target/release/vmcnet}
case $VMCNET in
/*) ;;
*) VMCNET=$PWD/$VMCNET ;;
esac

# median of the numbers on stdin; fails on none.
median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
