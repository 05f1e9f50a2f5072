//! The drill file format (TOML).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vmcnet_topo::TopoError;

/// A drill: traffic, and what must hold.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DrillFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seeds every endpoint's TCP/IP stack: the same seed gives the same frames.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// How VMC's reconciler follows the active Edge: `ip-move` (VMC's way), `eni-reattach` (the
    /// slow path) or `off`.
    #[serde(default)]
    pub reconciler: Reconciler,
    #[serde(default)]
    pub traffic: Vec<Traffic>,
    /// What happens to the SDDC while the traffic runs, each at its instant.
    #[serde(default, rename = "action")]
    pub actions: Vec<DrillAction>,
    /// What must hold of the lab when the drill ends.
    #[serde(default)]
    pub expect: DrillExpect,
    /// Where it was read from, and its text: errors found later name the line.
    #[serde(skip)]
    pub origin: String,
    #[serde(skip)]
    pub source: String,
}

/// What must hold of the lab at the end of a drill.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DrillExpect {
    /// The segments with no route in the VPC's main route table (the quota was full).
    pub unprogrammed: Option<Vec<String>>,
    /// Routes as they stand at the end, in any route table.
    #[serde(default)]
    pub routes: Vec<RouteExpect>,
    /// ENIs as they stand at the end: `in-use` or `available`.
    #[serde(default)]
    pub enis: Vec<EniExpect>,
}

/// A route of a VPC route table at the end of a drill.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteExpect {
    /// `main` (the main table) or a custom table's id.
    #[serde(default = "default_table")]
    pub table: String,
    /// A CIDR, or a prefix list id.
    pub destination: String,
    /// The ENI or gateway it targets.
    pub target: Option<String>,
    /// `active` or `blackhole`.
    pub state: Option<String>,
}

/// An ENI at the end of a drill.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EniExpect {
    pub id: String,
    /// `in-use` or `available`.
    pub status: Option<String>,
    /// The host it is attached to.
    pub host: Option<String>,
}

fn default_table() -> String {
    "main".into()
}

fn default_seed() -> u64 {
    1
}

/// The reconciler a drill runs with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reconciler {
    #[default]
    IpMove,
    EniReattach,
    Off,
}

/// An action of a drill, at an instant of its timeline.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DrillAction {
    /// vMotion of a VM or an Edge to a host: stunned at `at`, resumed there after the stun.
    Vmotion {
        #[serde(with = "humantime_serde")]
        at: Duration,
        vm: String,
        to: String,
    },
    /// The host fails (nothing restarts what ran on it).
    FailHost {
        #[serde(with = "humantime_serde")]
        at: Duration,
        host: String,
    },
    RecoverHost {
        #[serde(with = "humantime_serde")]
        at: Duration,
        host: String,
    },
    /// VMC's maintenance of a host: a spare host joins (after `replacement_host`) and takes an
    /// available ENI, what runs on the host moves to it by vMotion, and once the reconciler has
    /// moved the Edge's IP and routes off the host's ENI, that ENI is detached and the host leaves.
    Maintenance {
        #[serde(with = "humantime_serde")]
        at: Duration,
        host: String,
    },
    /// The Edge VM dies; its host stays.
    FailEdge {
        #[serde(with = "humantime_serde")]
        at: Duration,
        edge: String,
    },
    /// NSX creates a segment (the reconciler then adds its route, quota permitting).
    AddSegment {
        #[serde(with = "humantime_serde")]
        at: Duration,
        name: String,
        cidr: ipnet::Ipv4Net,
        #[serde(default = "default_gateway")]
        gateway: vmcnet_topo::Gateway,
    },
    /// NSX deletes a segment with no VM on it (the reconciler then deletes its route).
    DelSegment {
        #[serde(with = "humantime_serde")]
        at: Duration,
        name: String,
    },
    /// The reconciler stops acting; healed, it catches up.
    BreakReconciler {
        #[serde(with = "humantime_serde")]
        at: Duration,
    },
    HealReconciler {
        #[serde(with = "humantime_serde")]
        at: Duration,
    },
    /// BFD between the Edges stops getting through (their HA links go dark) while both run:
    /// once its detection time passes, the standby takes the active role too (split brain),
    /// until BFD is healed and comes back up.
    CutBfd {
        #[serde(with = "humantime_serde")]
        at: Duration,
    },
    HealBfd {
        #[serde(with = "humantime_serde")]
        at: Duration,
    },
}

fn default_gateway() -> vmcnet_topo::Gateway {
    vmcnet_topo::Gateway::Cgw
}

impl DrillAction {
    pub fn at(&self) -> Duration {
        match self {
            DrillAction::Vmotion { at, .. }
            | DrillAction::FailHost { at, .. }
            | DrillAction::RecoverHost { at, .. }
            | DrillAction::Maintenance { at, .. }
            | DrillAction::FailEdge { at, .. }
            | DrillAction::AddSegment { at, .. }
            | DrillAction::DelSegment { at, .. }
            | DrillAction::BreakReconciler { at }
            | DrillAction::HealReconciler { at }
            | DrillAction::CutBfd { at }
            | DrillAction::HealBfd { at } => *at,
        }
    }
}

/// One traffic item.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Traffic {
    /// ICMP echo requests.
    Ping {
        from: String,
        to: String,
        #[serde(default = "default_count")]
        count: u32,
        #[serde(default = "default_interval", with = "humantime_serde")]
        interval: Duration,
        /// ICMP payload, in bytes.
        #[serde(default = "default_ping_size")]
        size: usize,
        /// In a timed drill, when it starts.
        #[serde(default, with = "humantime_serde")]
        start: Option<Duration>,
        #[serde(default)]
        expect: Expect,
    },
    /// A TCP transfer to a sink server on `to`:`port`: `bytes` bytes as fast as TCP goes, or a
    /// stream written at `rate` for `duration` (`bytes` then defaults to rate × duration). In a
    /// timed drill it starts at `start`, beside the actions, and keeps retrying through an
    /// outage as Linux does (it gives up after [`TCP_GIVE_UP`] without progress).
    Tcp {
        from: String,
        to: String,
        #[serde(default = "default_tcp_port")]
        port: u16,
        #[serde(default)]
        bytes: Option<u64>,
        #[serde(default)]
        rate: Option<vmcnet_topo::Rate>,
        #[serde(default, with = "humantime_serde")]
        start: Option<Duration>,
        #[serde(default, with = "humantime_serde")]
        duration: Option<Duration>,
        #[serde(default)]
        expect: Expect,
    },
    /// Sequence-numbered UDP both ways between `from` and `to`, one datagram every `interval`
    /// from `start` for `duration`: loss and outage known per direction.
    Probe {
        from: String,
        to: String,
        #[serde(default, with = "humantime_serde")]
        start: Duration,
        #[serde(with = "humantime_serde")]
        duration: Duration,
        #[serde(default = "default_probe_interval", with = "humantime_serde")]
        interval: Duration,
        #[serde(default = "default_probe_port")]
        port: u16,
        #[serde(default)]
        expect: Expect,
    },
    /// A UDP traceroute.
    Traceroute {
        from: String,
        to: String,
        #[serde(default = "default_max_hops")]
        max_hops: u8,
        /// In a timed drill, when it starts.
        #[serde(default, with = "humantime_serde")]
        start: Option<Duration>,
        #[serde(default)]
        expect: Expect,
    },
}

/// What must hold for a traffic item. Unset fields take the natural default: every ping
/// answered, the TCP transfer complete and intact, the traceroute reaching its target.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Ping: replies received (default: all).
    pub received: Option<u32>,
    /// Ping: the TTL every reply arrives with.
    pub reply_ttl: Option<u8>,
    /// TCP: the transfer completes (default true); false expects it to fail.
    pub complete: Option<bool>,
    /// TCP: the source address the server sees (after NAT).
    pub server_sees_source: Option<std::net::Ipv4Addr>,
    /// Traceroute: the hops, in order (addresses; `*` for a hop that did not answer).
    pub hops: Option<Vec<String>>,
    /// Traceroute: the target answers (default true).
    pub reached: Option<bool>,
    /// Any: the item finishes within this much virtual time.
    #[serde(default, with = "humantime_serde")]
    pub within: Option<Duration>,
    /// Probe: the outage from `from` to `to`, a duration or a formula of the timing
    /// parameters (`vmotion_stun + control_plane_notice`); met within one interval.
    pub outage: Option<String>,
    /// Probe: the outage from `to` back to `from`, likewise.
    pub outage_back: Option<String>,
}

fn default_count() -> u32 {
    3
}
fn default_interval() -> Duration {
    Duration::from_millis(200)
}
fn default_ping_size() -> usize {
    56
}
fn default_tcp_port() -> u16 {
    5201
}
fn default_max_hops() -> u8 {
    16
}
fn default_probe_interval() -> Duration {
    Duration::from_millis(10)
}
fn default_probe_port() -> u16 {
    7000
}

/// The virtual time a drill may span: any instant, duration or schedule in it at most.
pub const MAX_SPAN: Duration = Duration::from_secs(30 * 24 * 3600);

/// A TCP stream in a timed drill gives up after this long without progress: about what Linux
/// takes with its default `tcp_retries2` (15 retransmissions, 924.6 s at the minimum RTO).
pub const TCP_GIVE_UP: Duration = Duration::from_secs(15 * 60);

impl Traffic {
    /// A TCP item's bytes: as given, or its rate for its duration; `None` when neither says.
    pub fn tcp_bytes(&self) -> Option<u64> {
        match self {
            Traffic::Tcp { bytes: Some(b), .. } => Some(*b),
            Traffic::Tcp {
                bytes: None,
                rate: Some(r),
                duration: Some(d),
                ..
            } => Some((u128::from(r.bits_per_sec()) * d.as_nanos() / 8 / 1_000_000_000) as u64),
            _ => None,
        }
    }

    pub fn from(&self) -> &str {
        match self {
            Traffic::Ping { from, .. }
            | Traffic::Tcp { from, .. }
            | Traffic::Probe { from, .. }
            | Traffic::Traceroute { from, .. } => from,
        }
    }

    pub fn to(&self) -> &str {
        match self {
            Traffic::Ping { to, .. }
            | Traffic::Tcp { to, .. }
            | Traffic::Probe { to, .. }
            | Traffic::Traceroute { to, .. } => to,
        }
    }

    /// When the item starts in a timed drill, if it says.
    pub fn start(&self) -> Option<Duration> {
        match self {
            Traffic::Ping { start, .. }
            | Traffic::Tcp { start, .. }
            | Traffic::Traceroute { start, .. } => *start,
            Traffic::Probe { start, .. } => Some(*start),
        }
    }

    pub fn expect(&self) -> &Expect {
        match self {
            Traffic::Ping { expect, .. }
            | Traffic::Tcp { expect, .. }
            | Traffic::Probe { expect, .. }
            | Traffic::Traceroute { expect, .. } => expect,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Traffic::Ping { .. } => "ping",
            Traffic::Tcp { .. } => "tcp",
            Traffic::Probe { .. } => "probe",
            Traffic::Traceroute { .. } => "traceroute",
        }
    }
}

impl DrillFile {
    /// A drill with actions or probes runs on one timeline: its traffic items run side by
    /// side, each from its `start`; otherwise they run one after another.
    /// The instant of the drill's last action (zero if it has none).
    pub fn last_action_at(&self) -> Duration {
        self.actions
            .iter()
            .map(|a| a.at())
            .max()
            .unwrap_or_default()
    }

    pub fn is_timed(&self) -> bool {
        !self.actions.is_empty()
            || self
                .traffic
                .iter()
                .any(|t| matches!(t, Traffic::Probe { .. }))
    }

    /// Parse a drill; errors name the origin and line.
    pub fn parse(src: &str, origin: &str) -> Result<DrillFile, TopoError> {
        let mut d: DrillFile =
            toml::from_str(src).map_err(|e| TopoError::from_toml(&e, src, origin))?;
        d.origin = origin.to_string();
        d.source = src.to_string();
        if let Err(v) = d.check() {
            return Err(TopoError::from_violation(v, src, origin));
        }
        Ok(d)
    }

    /// What needs no topology to reject: an expectation that does not apply to its item, and
    /// a check that cannot fail (nothing sent, nothing expected of it).
    pub(crate) fn check(&self) -> Result<(), vmcnet_topo::Violation> {
        use vmcnet_topo::FieldPath;
        let too_long = |path: FieldPath, d: Duration| {
            (d > MAX_SPAN).then(|| {
                path.violation(format!(
                    "{}: a drill spans at most {} of virtual time",
                    humantime::format_duration(d),
                    humantime::format_duration(MAX_SPAN)
                ))
            })
        };
        for (i, a) in self.actions.iter().enumerate() {
            if let Some(v) = too_long(FieldPath::new("action").index(i).key("at"), a.at()) {
                return Err(v);
            }
            if let DrillAction::AddSegment { name, .. } = a {
                if !vmcnet_topo::name_ok(name) {
                    return Err(FieldPath::new("action")
                        .index(i)
                        .key("name")
                        .violation(format!(
                        "{name:?}: a name is 1 to 63 letters, digits, `.`, `_` or `-`, starting \
                         with a letter or a digit"
                    )));
                }
            }
        }
        for (i, t) in self.traffic.iter().enumerate() {
            let item = FieldPath::new("traffic").index(i);
            let spans: [(&str, Option<Duration>); 3] = match t {
                Traffic::Ping {
                    start,
                    interval,
                    count,
                    ..
                } => [
                    ("start", *start),
                    ("interval", Some(interval.saturating_mul(*count))),
                    ("", None),
                ],
                Traffic::Tcp {
                    start, duration, ..
                } => [("start", *start), ("duration", *duration), ("", None)],
                Traffic::Probe {
                    start,
                    duration,
                    interval,
                    ..
                } => [
                    ("start", Some(*start)),
                    ("duration", Some(*duration)),
                    ("interval", Some(*interval)),
                ],
                Traffic::Traceroute { start, .. } => [("start", *start), ("", None), ("", None)],
            };
            for (key, d) in spans {
                if let Some(v) = d.and_then(|d| too_long(item.clone().key(key), d)) {
                    return Err(v);
                }
            }
            let ex = t.expect();
            let set: [(&str, bool); 9] = [
                ("received", ex.received.is_some()),
                ("reply_ttl", ex.reply_ttl.is_some()),
                ("complete", ex.complete.is_some()),
                ("server_sees_source", ex.server_sees_source.is_some()),
                ("hops", ex.hops.is_some()),
                ("reached", ex.reached.is_some()),
                ("within", ex.within.is_some()),
                ("outage", ex.outage.is_some()),
                ("outage_back", ex.outage_back.is_some()),
            ];
            let applies: &[&str] = match t {
                Traffic::Ping { .. } => &["received", "reply_ttl", "within"],
                Traffic::Tcp { .. } => &["complete", "server_sees_source", "within"],
                Traffic::Probe { .. } => &["outage", "outage_back"],
                Traffic::Traceroute { .. } => &["hops", "reached", "within"],
            };
            if let Some((key, _)) = set.iter().find(|(k, on)| *on && !applies.contains(k)) {
                return Err(item.key("expect").key(key).violation(format!(
                    "does not apply to a {} item (it takes {})",
                    t.kind(),
                    applies.join(", ")
                )));
            }
            let zero = |field: &str, what: &str| Err(item.clone().key(field).violation(what));
            if !self.is_timed() && t.start().is_some() {
                return zero(
                    "start",
                    "applies only in a timed drill (one with actions or probes); items here run one after another",
                );
            }
            match t {
                Traffic::Ping {
                    count, interval, ..
                } => {
                    if *count == 0 {
                        return zero("count", "0 pings send nothing: a check that cannot fail");
                    }
                    if interval.is_zero() && *count > 1 {
                        return zero("interval", "must be more than 0");
                    }
                    if ex.received.is_some_and(|r| r > *count) {
                        return Err(item.key("expect").key("received").violation(format!(
                            "more replies than the {count} requests sent: it cannot pass"
                        )));
                    }
                }
                Traffic::Probe {
                    duration,
                    interval,
                    port,
                    ..
                } => {
                    if *port == 0 {
                        return zero("port", "0 is no port a sink can listen on");
                    }
                    if interval.is_zero() {
                        return zero("interval", "must be more than 0");
                    }
                    if duration < interval {
                        return zero(
                            "duration",
                            "shorter than one interval: no probe is sent, nothing is checked",
                        );
                    }
                }
                Traffic::Traceroute { max_hops: 0, .. } => {
                    return zero("max_hops", "0 hops probe nothing");
                }
                Traffic::Tcp {
                    port,
                    bytes,
                    rate,
                    duration,
                    ..
                } => {
                    if *port == 0 {
                        return zero("port", "0 is no port a server can listen on");
                    }
                    if rate.is_some_and(|r| r.is_unlimited()) {
                        return zero(
                            "rate",
                            "a stream's rate cannot be unlimited: leave `rate` out for a bulk \
                             transfer",
                        );
                    }
                    if duration.is_some() && rate.is_none() {
                        return zero("duration", "needs `rate`: a stream written at a rate");
                    }
                    if duration.is_some() && bytes.is_some() {
                        return zero(
                            "bytes",
                            "give `bytes` or `duration`, not both (`rate` for `duration` makes \
                             the bytes)",
                        );
                    }
                    match t.tcp_bytes() {
                        None => {
                            return zero("bytes", "missing: give `bytes`, or `rate` and `duration`")
                        }
                        Some(0) => {
                            return zero(
                                "bytes",
                                "sends nothing: a transfer of 0 bytes checks nothing",
                            )
                        }
                        Some(_) => {}
                    }
                }
                _ => {}
            }
            for (key, f) in [("outage", &ex.outage), ("outage_back", &ex.outage_back)] {
                let Some(f) = f else { continue };
                if f.trim() == "open" {
                    continue;
                }
                if let Err(message) = super::formula::eval(f, &vmcnet_topo::Timing::default()) {
                    return Err(item.clone().key("expect").key(key).violation(message));
                }
            }
        }
        Ok(())
    }

    /// `origin:line` of the field at `path`, if the file holds it (or a parent of it).
    pub fn locate(&self, path: &vmcnet_topo::FieldPath) -> Option<String> {
        if self.origin.is_empty() {
            return None;
        }
        let e = vmcnet_topo::TopoError::from_violation(
            path.violation(String::new()),
            &self.source,
            &self.origin,
        );
        Some(match e.line {
            Some(line) => format!("{}:{line}", self.origin),
            None => self.origin.clone(),
        })
    }

    pub fn load(path: &Path) -> Result<DrillFile, TopoError> {
        let src = std::fs::read_to_string(path).map_err(|e| TopoError::io(path, e))?;
        Self::parse(&src, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_with_defaults() {
        let d = DrillFile::parse(
            r#"
name = "t"
[[traffic]]
kind = "ping"
from = "web-1"
to = "ec2-1"
[[traffic]]
kind = "tcp"
from = "web-1"
to = "s3"
port = 443
bytes = 1000
expect = { server_sees_source = "172.31.0.30" }
[[traffic]]
kind = "traceroute"
from = "web-1"
to = "172.31.16.10"
expect = { hops = ["192.168.1.1", "*"], within = "5s" }
"#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(d.seed, 1);
        assert_eq!(d.traffic.len(), 3);
        assert!(matches!(d.traffic[0], Traffic::Ping { count: 3, .. }));
        assert_eq!(
            d.traffic[1].expect().server_sees_source,
            Some("172.31.0.30".parse().unwrap())
        );
        assert_eq!(d.traffic[2].expect().within, Some(Duration::from_secs(5)));
    }

    #[test]
    fn errors_name_the_line() {
        let e = DrillFile::parse("name = \"t\"\n[[traffic]]\nkind = \"pong\"\n", "d.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("d.toml:"), "{e}");
        assert!(e.contains("pong"), "{e}");
        let e = DrillFile::parse("name = \"t\"\nbogus = 1\n", "d.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("d.toml:2:"), "{e}");
        let e = DrillFile::parse(
            "name = \"t\"\n[[traffic]]\nkind = \"ping\"\nfrom = \"a\"\nto = \"b\"\ncuont = 3\n",
            "d.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("d.toml:6:"), "{e}");
    }
}
