#!/usr/bin/env bash
# Install the system tools vmcnet's tests use (tcpdump, tshark, kill; for the live lab ip,
# ping, iperf3 and traceroute), if they are missing.
set -euo pipefail
missing=()
command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
command -v tshark >/dev/null 2>&1 || missing+=(tshark)
# The kill program (not the shell's builtin): a test sends a drill Ctrl-C with it.
[ -x /usr/bin/kill ] || [ -x /bin/kill ] || missing+=(procps)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
command -v traceroute >/dev/null 2>&1 || missing+=(traceroute)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
