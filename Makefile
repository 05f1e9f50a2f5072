# vmcnet: the two commands a fresh machine needs are `make run` and `make test`.
CARGO ?= cargo
VMCNET := target/release/vmcnet
TOPO ?= topo/default.toml
DRILL ?= scripts/drills/smoke.toml

.PHONY: all build run test lint unit bench bench-pcap bench-live bench-drills fuzz deps clean

all: build

build:
	$(CARGO) build --release --bin vmcnet

# Build, then show the default lab, run the smoke drill and an Edge vMotion on it; the Edge
# vMotion is also drawn as an SVG timeline.
run: build
	$(VMCNET) validate $(TOPO)
	$(VMCNET) show $(TOPO) eni
	$(VMCNET) show $(TOPO) routes
	$(VMCNET) drill $(TOPO) $(DRILL)
	$(VMCNET) drill $(TOPO) scripts/drills/edge-vmotion.toml --svg target/edge-vmotion.svg
	@echo "the Edge vMotion drill as a timeline: target/edge-vmotion.svg"

# Formatting, lints, then every test (unit, topology, sim, end-to-end with tcpdump/tshark).
test: deps lint unit

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

# Forwarding rate of the sim on the full VM -> EC2 path, next to a direct-call baseline.
bench:
	$(CARGO) bench -p vmcnet --bench forward

# What `--pcap` costs: the smoke drill and a 50 MiB transfer, each without a capture, with one
# pcapng file and with a file per link; medians of BENCH_PCAP_REPS (15) interleaved runs, as
# ratios to the run without a capture.
bench-pcap: build
	VMCNET=$(VMCNET) scripts/bench-pcap.sh

# Wall time of every shipped drill and of an hour-long one (scripts/bench/hour.toml; the target
# is under 5 s), medians of BENCH_DRILLS_REPS (3) runs, with virtual seconds per wall second.
bench-drills: build
	VMCNET=$(VMCNET) scripts/bench-drills.sh

# The live lab (topo/examples/bench-live.toml, links at no delay and unlimited rate) against a
# direct veth pair and a chain of 2 kernel routers: iperf3 (1 and 2 streams) and ping, medians of
# 5, as ratios to the veth pair. Root, iperf3 and ping; BENCH_LIVE_REPS, BENCH_LIVE_SECONDS.
bench-live: build
	VMCNET=$(VMCNET) scripts/bench-live.sh

# 10 million hostile frames into every port of the default lab (release build), with frames per
# second; VMCNET_FUZZ_FRAMES=N sets the count. `make test` runs 200,000 in the debug build.
fuzz:
	$(CARGO) test --release -p vmcnet --test fuzz fuzz_many -- --ignored --nocapture

# Tools the end-to-end tests use to read captures.
deps:
	@scripts/install-deps.sh

clean:
	$(CARGO) clean
