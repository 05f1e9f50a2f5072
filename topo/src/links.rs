//! Links: every point-to-point link of a lab, its kind, and the delay, rate and queue each
//! direction has.
//!
//! A topology's `[links]` table sets the parameters per link kind (any field left out keeps the
//! kind's default) and, under `[links.overrides]`, per link by name:
//!
//! ```toml
//! [links]
//! underlay = { delay = "50us" }
//! ec2 = { rate = "10Gbit/s", queue = "2MiB" }
//!
//! [links.overrides]
//! "esxi-1--underlay" = { rate = "10Gbit/s" }
//! ```
//!
//! Links are named `a--b` after the two nodes they join; [`Topology::link_plan`] lists them all.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::Topology;

/// Name of the underlay node that carries Geneve between host TEPs.
pub const UNDERLAY: &str = "underlay";
/// Name of the VPC router node.
pub const VPC_ROUTER: &str = "vpc-router";

/// What a link joins; each kind has its own default parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// A VM's or an Edge segment interface's vNIC to its host's virtual switch.
    Vnic,
    /// An Edge's uplink vNIC to its host, toward the ENI (the Connected VPC side).
    Uplink,
    /// A host's TEP to the underlay (Geneve between hosts).
    Underlay,
    /// A host's uplink to its ENI, and an SDDC ENI to the VPC router.
    Eni,
    /// An EC2 instance to its ENI, and that ENI to the VPC router.
    Ec2,
    /// The S3 service behind the gateway endpoint, to the VPC router.
    S3,
}

impl LinkKind {
    pub const ALL: [LinkKind; 6] = [
        LinkKind::Vnic,
        LinkKind::Uplink,
        LinkKind::Underlay,
        LinkKind::Eni,
        LinkKind::Ec2,
        LinkKind::S3,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Vnic => "vnic",
            LinkKind::Uplink => "uplink",
            LinkKind::Underlay => "underlay",
            LinkKind::Eni => "eni",
            LinkKind::Ec2 => "ec2",
            LinkKind::S3 => "s3",
        }
    }

    /// The kind's default parameters; DESIGN.md §2 gives the basis of each.
    pub fn default_spec(self) -> LinkSpec {
        let us = Duration::from_micros;
        // IP MTUs: NSX segments 1500; the Edge's services uplink 8900 (VMC, assumed); the
        // underlay jumbo (it must carry a segment's packets plus 50 bytes of Geneve); the
        // SDDC's ENIs 9001 (AWS's in a VPC); EC2 instances 1500, as the SDDC's segments (AWS's
        // default is 9001: set it to see the Edge answer fragmentation-needed; smoltcp grows
        // its congestion window by the peer's MSS, so a 9001-byte peer of a 1500-byte sender
        // overshoots queues); S3 assumed 1500.
        let (delay, gbit, queue_kib, mtu) = match self {
            // In-host switching: vmxnet3 and the vSwitch, a few µs; vmxnet3 reports 10 Gbit/s.
            LinkKind::Vnic => (us(5), 10, 512, 1500),
            // The Edge's uplink: in-host too, at the host NIC's rate.
            LinkKind::Uplink => (us(5), 25, 512, 8900),
            // Host NIC (ENA, 25 Gbit/s on i3/i4i.metal) to the spine of one AZ: tens of µs.
            LinkKind::Underlay => (us(25), 25, 1024, 9000),
            // The same host NIC, seen as its ENI in the connected VPC, and the VPC fabric.
            LinkKind::Eni => (us(25), 25, 1024, 9001),
            // An instance's ENA: 5 Gbit/s, AWS's limit for one flow outside a placement group.
            LinkKind::Ec2 => (us(25), 5, 1024, 1500),
            // S3 through the gateway endpoint: regional, assumed 250 µs one way.
            LinkKind::S3 => (us(250), 5, 1024, 1500),
        };
        LinkSpec {
            delay,
            rate: Rate::gbit(gbit),
            queue: ByteSize(queue_kib * 1024),
            mtu,
        }
    }
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rate in bits per second; zero means unlimited (frames take no time to send).
///
/// Written `"25Gbit/s"`, `"500Mbit/s"`, `"64kbit/s"`, `"1000bit/s"` (the `/s` is optional) or
/// `"unlimited"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rate(pub u64);

impl Rate {
    pub const UNLIMITED: Rate = Rate(0);

    pub const fn gbit(g: u64) -> Rate {
        Rate(g * 1_000_000_000)
    }

    pub fn bits_per_sec(self) -> u64 {
        self.0
    }

    pub fn is_unlimited(self) -> bool {
        self.0 == 0
    }

    /// The bytes sent at this rate in `d`, rounded up (none at an unlimited rate, which takes
    /// no time). 64-bit arithmetic while it fits, as for [`Rate::serialization`].
    pub fn bytes_in(self, d: Duration) -> u64 {
        self.bytes_in_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// [`Rate::bytes_in`] `ns` nanoseconds.
    #[inline]
    pub fn bytes_in_nanos(self, ns: u64) -> u64 {
        match ns.checked_mul(self.0) {
            _ if ns == 0 => 0,
            Some(bits_ns) => bits_ns.div_ceil(8_000_000_000),
            None => (u128::from(ns) * u128::from(self.0)).div_ceil(8_000_000_000) as u64,
        }
    }

    /// The time `bytes` bytes take to send at this rate, rounded up to the nanosecond.
    pub fn serialization(self, bytes: usize) -> Duration {
        Duration::from_nanos(self.serialization_nanos(bytes))
    }

    /// [`Rate::serialization`] in nanoseconds (at most `u64::MAX`).
    #[inline]
    pub fn serialization_nanos(self, bytes: usize) -> u64 {
        if self.0 == 0 {
            return 0;
        }
        // 64-bit arithmetic while it fits (any frame's length does): a 128-bit division is a
        // call, for every frame sent onto a link that takes time.
        if let Some(bits_ns) = (bytes as u64).checked_mul(8_000_000_000) {
            return bits_ns.div_ceil(self.0);
        }
        let nanos = (bytes as u128 * 8 * 1_000_000_000).div_ceil(self.0 as u128);
        nanos.min(u64::MAX as u128) as u64
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(Rate::UNLIMITED);
        }
        let t = t
            .strip_suffix("/s")
            .or_else(|| t.strip_suffix("ps"))
            .unwrap_or(t);
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult: f64 = match unit.trim() {
            "bit" | "b" => 1.0,
            "kbit" | "Kbit" | "kb" | "Kb" | "k" | "K" => 1e3,
            "Mbit" | "mbit" | "Mb" | "M" => 1e6,
            "Gbit" | "gbit" | "Gb" | "G" => 1e9,
            "Tbit" | "tbit" | "Tb" | "T" => 1e12,
            _ => {
                return Err(format!(
                    "`{s}` is not a rate: write e.g. \"25Gbit/s\", \"500Mbit/s\" or \"unlimited\""
                ))
            }
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a rate: the number is missing or malformed"))?;
        let bits = n * mult;
        if !(1.0..=1e15).contains(&bits) {
            return Err(format!(
                "`{s}`: a rate is between 1 bit/s and 1 Pbit/s, or \"unlimited\""
            ));
        }
        Ok(Rate(bits.round() as u64))
    }
}

impl fmt::Display for Rate {
    /// `25Gbit/s`, `500Mbit/s`, `unlimited`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b == 0 {
            return f.write_str("unlimited");
        }
        for (div, unit) in [(1e12, "Tbit"), (1e9, "Gbit"), (1e6, "Mbit"), (1e3, "kbit")] {
            if b as f64 >= div {
                return write!(f, "{}{unit}/s", b as f64 / div);
            }
        }
        write!(f, "{b}bit/s")
    }
}

/// A size in bytes. Written as a number of bytes or `"64KiB"`, `"1MiB"`, `"1500B"`, `"64kB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            _ => {
                return Err(format!(
                    "`{s}` is not a size: write e.g. \"64KiB\", \"1MiB\" or a number of bytes"
                ))
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size: the number is missing or malformed"))?;
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (div, unit) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
            if b >= div && b % div == 0 {
                return write!(f, "{}{unit}", b / div);
            }
        }
        write!(f, "{b}B")
    }
}

/// A number (bytes or bit/s) or a string with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(u64),
    Str(String),
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => Ok(Rate(n)),
            NumOrStr::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => Ok(ByteSize(n)),
            NumOrStr::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// The parameters of one direction of a link (both directions of a link get the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSpec {
    /// One-way propagation delay.
    pub delay: Duration,
    /// The rate frames are sent at (serialization); unlimited takes no time.
    pub rate: Rate,
    /// Bytes the sending side may hold waiting to be sent (the frame being sent included); a
    /// frame that does not fit is dropped and counted.
    pub queue: ByteSize,
    /// The largest IP packet the link carries, in bytes (its Ethernet frames are 14 more); a
    /// larger frame is dropped and counted.
    pub mtu: u32,
}

impl LinkSpec {
    /// A link that takes no time: no delay, unlimited rate.
    pub const INSTANT: LinkSpec = LinkSpec {
        delay: Duration::ZERO,
        rate: Rate::UNLIMITED,
        queue: ByteSize(u64::MAX),
        mtu: u32::MAX,
    };

    /// Whether a frame crosses at the instant it is sent.
    pub fn is_instant(&self) -> bool {
        self.delay.is_zero() && self.rate.is_unlimited()
    }

    /// The time from sending the first bit of a frame of `bytes` bytes to its last bit arriving,
    /// on an idle link.
    pub fn one_way(&self, bytes: usize) -> Duration {
        self.delay + self.rate.serialization(bytes)
    }

    /// These parameters with the fields `opt` sets replaced.
    pub fn with(self, opt: &LinkOpt) -> LinkSpec {
        LinkSpec {
            delay: opt.delay.unwrap_or(self.delay),
            rate: opt.rate.unwrap_or(self.rate),
            queue: opt.queue.unwrap_or(self.queue),
            mtu: opt.mtu.unwrap_or(self.mtu),
        }
    }
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "delay {:?}, rate {}, queue {}, MTU {}",
            self.delay, self.rate, self.queue, self.mtu
        )
    }
}

/// Link parameters as written in a topology: any field left out keeps the value below it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOpt {
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<ByteSize>,
    /// IP MTU, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// The `[links]` table: parameters per link kind, then per link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Links {
    pub vnic: LinkOpt,
    pub uplink: LinkOpt,
    pub underlay: LinkOpt,
    pub eni: LinkOpt,
    pub ec2: LinkOpt,
    pub s3: LinkOpt,
    /// Per link, by its name (`web-1--esxi-1`, `esxi-1--underlay`, `eni-2--vpc-router`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, LinkOpt>,
}

impl Links {
    /// What the topology writes for a kind.
    pub fn kind_opt(&self, kind: LinkKind) -> &LinkOpt {
        match kind {
            LinkKind::Vnic => &self.vnic,
            LinkKind::Uplink => &self.uplink,
            LinkKind::Underlay => &self.underlay,
            LinkKind::Eni => &self.eni,
            LinkKind::Ec2 => &self.ec2,
            LinkKind::S3 => &self.s3,
        }
    }

    /// The parameters of a kind: its defaults, with what the topology sets.
    pub fn kind_spec(&self, kind: LinkKind) -> LinkSpec {
        kind.default_spec().with(self.kind_opt(kind))
    }

    /// The parameters of the link `name` of kind `kind`.
    pub fn spec(&self, name: &str, kind: LinkKind) -> LinkSpec {
        let spec = self.kind_spec(kind);
        match self.overrides.get(name) {
            Some(o) => spec.with(o),
            None => spec,
        }
    }

    /// Every link takes no time (for benchmarks of the forwarding path alone).
    pub fn instant() -> Links {
        let zero = LinkOpt {
            delay: Some(Duration::ZERO),
            rate: Some(Rate::UNLIMITED),
            queue: Some(ByteSize(u64::MAX)),
            mtu: Some(u32::MAX),
        };
        Links {
            vnic: zero.clone(),
            uplink: zero.clone(),
            underlay: zero.clone(),
            eni: zero.clone(),
            ec2: zero.clone(),
            s3: zero,
            overrides: BTreeMap::new(),
        }
    }
}

/// The name of an Edge's uplink interface (its link is `<edge>.uplink--<host>`).
pub const EDGE_UPLINK_IFACE: &str = "uplink";
/// The name of an Edge's HA interface, which BFD to the other Edge runs on.
pub const EDGE_HA_IFACE: &str = "ha";
/// The interfaces every Edge has beside its segments': no segment may take their names.
pub const EDGE_RESERVED_IFACES: [&str; 2] = [EDGE_UPLINK_IFACE, EDGE_HA_IFACE];

/// How an Edge's interface is named as the end of its link (`edge-1.uplink`).
pub fn edge_iface_end(edge: &str, iface: &str) -> String {
    format!("{edge}.{iface}")
}

/// The name of the link between nodes `a` and `b`.
pub fn link_name(a: &str, b: &str) -> String {
    format!("{a}--{b}")
}

/// A link of the lab plan: its name, its kind and its two ends (node names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLink {
    pub name: String,
    pub kind: LinkKind,
}

impl Topology {
    /// Every link a lab of this topology has, with its kind, in the order the lab builds them.
    /// Edge interfaces are nodes' ports, named `<edge>.<interface>`.
    pub fn link_plan(&self) -> Vec<PlannedLink> {
        let mut v = Vec::new();
        let mut add = |a: &str, b: &str, kind| {
            v.push(PlannedLink {
                name: link_name(a, b),
                kind,
            })
        };
        for h in self.hosts() {
            add(h, UNDERLAY, LinkKind::Underlay);
        }
        let host_of_eni: BTreeMap<&str, &str> =
            self.host_enis().map(|(h, e)| (e.id.as_str(), h)).collect();
        for e in &self.vpc.enis {
            add(&e.id, VPC_ROUTER, LinkKind::Eni);
            if let Some(h) = host_of_eni.get(e.id.as_str()) {
                add(h, &e.id, LinkKind::Eni);
            }
        }
        for inst in &self.vpc.instances {
            let eni = instance_eni_id(&inst.name);
            add(&inst.name, &eni, LinkKind::Ec2);
            add(&eni, VPC_ROUTER, LinkKind::Ec2);
        }
        if let Some(s3) = &self.vpc.s3_endpoint {
            add(&s3.name, VPC_ROUTER, LinkKind::S3);
        }
        for (_, vm) in self.vms() {
            add(&vm.name, &vm.host, LinkKind::Vnic);
        }
        let e = &self.sddc.edges;
        for edge in [&e.active, &e.standby] {
            add(
                &edge_iface_end(&edge.name, EDGE_UPLINK_IFACE),
                &edge.host,
                LinkKind::Uplink,
            );
            for s in &self.sddc.segments {
                add(
                    &edge_iface_end(&edge.name, &s.name),
                    &edge.host,
                    LinkKind::Vnic,
                );
            }
            add(
                &edge_iface_end(&edge.name, EDGE_HA_IFACE),
                &edge.host,
                LinkKind::Vnic,
            );
        }
        v
    }
}

/// The ENI id of an EC2 instance.
pub fn instance_eni_id(instance: &str) -> String {
    format!("eni-{instance}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_sizes_parse_and_print() {
        assert_eq!("25Gbit/s".parse(), Ok(Rate(25_000_000_000)));
        assert_eq!("500 Mbit".parse(), Ok(Rate(500_000_000)));
        assert_eq!("1.5Gbps".parse(), Ok(Rate(1_500_000_000)));
        assert_eq!("unlimited".parse(), Ok(Rate::UNLIMITED));
        assert!("25 furlongs".parse::<Rate>().is_err());
        assert!("0.1bit/s".parse::<Rate>().is_err());
        assert_eq!(Rate::gbit(25).to_string(), "25Gbit/s");
        assert_eq!(Rate(1_500_000).to_string(), "1.5Mbit/s");
        assert_eq!("64KiB".parse(), Ok(ByteSize(65536)));
        assert_eq!("1MiB".parse(), Ok(ByteSize(1 << 20)));
        assert_eq!("1500".parse(), Ok(ByteSize(1500)));
        assert!("1 parsec".parse::<ByteSize>().is_err());
        assert!("99999999999999999GiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(1 << 20).to_string(), "1MiB");
    }

    #[test]
    fn serialization_is_bits_over_rate_rounded_up() {
        // 1500 B at 1 Gbit/s: 12,000 bits = 12 µs exactly.
        assert_eq!(Rate::gbit(1).serialization(1500), Duration::from_micros(12));
        // 148 B at 25 Gbit/s: 1184 bits / 25 = 47.36 ns, rounded up to 48.
        assert_eq!(Rate::gbit(25).serialization(148), Duration::from_nanos(48));
        assert_eq!(Rate::UNLIMITED.serialization(9000), Duration::ZERO);
        // Either side of where bits × 10^9 stops fitting in 64 bits: the same arithmetic
        // (at 8 Gbit/s a byte takes a nanosecond), both ways.
        let last_fit = (u64::MAX / 8_000_000_000) as usize;
        for bytes in [last_fit, last_fit + 1] {
            let want = Duration::from_nanos(bytes as u64);
            assert_eq!(Rate::gbit(8).serialization(bytes), want);
            assert_eq!(Rate::gbit(8).bytes_in(want), bytes as u64);
        }
        // What a sender has sent in 1 µs at 25 Gbit/s: 3,125 bytes; in 1 ns, 3.125, so 4.
        assert_eq!(Rate::gbit(25).bytes_in(Duration::from_micros(1)), 3_125);
        assert_eq!(Rate::gbit(25).bytes_in(Duration::from_nanos(1)), 4);
        assert_eq!(Rate::UNLIMITED.bytes_in(Duration::from_secs(1)), 0);
    }

    #[test]
    fn a_link_takes_its_kind_then_its_own_override() {
        let mut links = Links::default();
        links.ec2.rate = Some(Rate::gbit(10));
        links.overrides.insert(
            "ec2-1--eni-ec2-1".into(),
            LinkOpt {
                queue: Some(ByteSize(16384)),
                ..LinkOpt::default()
            },
        );
        let other = links.spec("x--y", LinkKind::Ec2);
        assert_eq!(other.rate, Rate::gbit(10));
        assert_eq!(other.delay, LinkKind::Ec2.default_spec().delay);
        let one = links.spec("ec2-1--eni-ec2-1", LinkKind::Ec2);
        assert_eq!((one.rate, one.queue), (Rate::gbit(10), ByteSize(16384)));
        assert!(Links::instant().spec("a--b", LinkKind::Vnic).is_instant());
    }
}
