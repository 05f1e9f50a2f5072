//! Validation of a topology: the rules of VMware Cloud on AWS and of an AWS VPC that a topology
//! file must follow.
//!
//! A topology text goes through two steps:
//!
//! 1. `toml` and serde turn it into a [`Topology`]. A syntax or schema error (unknown field, wrong
//!    type, bad CIDR, missing field) becomes a [`TopoError`] at the line of the error's span.
//! 2. [`check`] applies the rules in a fixed order and stops at the first [`Violation`], which
//!    names the offending field by its [`FieldPath`]. The path is then looked up in the text,
//!    re-parsed with `toml_edit` to keep spans, to give the line of that field.
//!
//! Every error renders as one line: `origin:line: field: message`, e.g.
//! `lab.toml:10: sddc.clusters[0].hosts: cluster-1 has 17 hosts; a cluster holds at most 16`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::{Range, RangeInclusive};
use std::path::Path;
use std::time::Duration;

use ipnet::Ipv4Net;
use toml_edit::{Document, Item};

use crate::links::LinkKind;
use crate::model::{Gateway, Segment, Subnet, Topology};

/// Hosts a cluster may hold.
pub const MAX_HOSTS_PER_CLUSTER: usize = 16;
/// Clusters an SDDC may hold.
pub const MAX_CLUSTERS: usize = 20;
/// Hosts an SDDC may hold, all clusters together.
pub const MAX_HOSTS: usize = 300;
/// Cross-account ENIs VMC creates in the connected subnet: 16 hosts + 1 spare.
pub const MAX_ENIS: usize = 17;
/// The prefix lengths a management CIDR may have.
pub const MANAGEMENT_PREFIXES: [u8; 3] = [16, 20, 23];
/// Ranges VMC reserves, which the management CIDR may not overlap.
pub const RESERVED_BY_VMC: [Ipv4Net; 3] = [
    Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 15),
    Ipv4Net::new_assert(Ipv4Addr::new(172, 31, 0, 0), 16),
    Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 1, 0), 24),
];
/// The BFD multipliers an Edge accepts.
pub const BFD_MULTIPLIERS: RangeInclusive<u32> = 2..=16;
/// The BFD intervals an Edge accepts: down to 1 ms for experiments (each interval is a timer and
/// a packet each way in a drill, so far shorter ones would stall it), up to a minute.
pub const BFD_INTERVALS: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// A topology error: one line naming the origin, the line, the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.one_line())]
pub struct TopoError {
    pub origin: String,
    /// 1-based line of the offending field, when known.
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `sddc.clusters[0].hosts`.
    pub field: String,
    pub message: String,
}

/// The path of a field in a topology file, e.g. `sddc.clusters[0].hosts` or `vpc.enis[3].ip`.
///
/// Rules name the field they reject with a path; [`FieldPath::span_in`] finds it in the text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<Step>);

/// One step of a [`FieldPath`]: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Step {
    Key(String),
    Index(usize),
}

/// A broken rule, before it is placed in a file: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Violation {
    pub field: FieldPath,
    pub message: String,
    /// The other field of a clash (an overlap), whose line the error names too.
    pub other: Option<FieldPath>,
}

/// What a rule returns: nothing, or the first violation it found.
type Check = Result<(), Violation>;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

impl TopoError {
    pub fn io(path: &Path, err: std::io::Error) -> Self {
        TopoError {
            origin: path.display().to_string(),
            line: None,
            field: String::new(),
            message: format!("cannot read: {err}"),
        }
    }

    /// A syntax or schema error from `toml`, at the line of its span. The field is the deepest one
    /// whose key or value holds the span; none for a syntax error.
    pub fn from_toml(err: &toml::de::Error, src: &str, origin: &str) -> Self {
        let start = unknown_key_offset(err, src).or(err.span().map(|span| span.start));
        let field = start
            .and_then(|offset| {
                let doc = Document::parse(src).ok()?;
                Some(FieldPath::at_offset(doc.as_item(), offset))
            })
            .map(|path| path.to_string())
            .unwrap_or_default();
        let mut message = one_line(err.message());
        // Name the key a duplicate is of: its text at the error's span.
        if message == "duplicate key" {
            if let Some(key) = err.span().and_then(|s| src.get(s)) {
                let key = key.trim();
                if !key.is_empty() && key.len() <= 64 {
                    message = format!("duplicate key `{key}`: it is set above already");
                }
            }
        }
        TopoError {
            origin: origin.to_string(),
            line: start.map(|offset| line_at(src, offset)),
            field,
            message,
        }
    }

    /// A broken rule, at the line of its field in `src` (or of the nearest parent in the file);
    /// the field it clashes with, if any, is named with its line.
    pub fn from_violation(violation: Violation, src: &str, origin: &str) -> Self {
        let doc = Document::parse(src).ok();
        let line_of = |field: &FieldPath| {
            doc.as_ref()
                .and_then(|doc| field.span_in(doc))
                .map(|span| line_at(src, span.start))
        };
        let mut message = violation.message;
        if let Some(other) = &violation.other {
            match line_of(other) {
                Some(line) => message += &format!(" ({other}, line {line})"),
                None => message += &format!(" ({other})"),
            }
        }
        TopoError {
            origin: origin.to_string(),
            line: line_of(&violation.field),
            field: violation.field.to_string(),
            message,
        }
    }
}

impl TopoError {
    /// `origin:line: field: message`, leaving out what is not known.
    fn one_line(&self) -> String {
        let mut s = self.origin.clone();
        if let Some(line) = self.line {
            s += &format!(":{line}");
        }
        if !self.field.is_empty() {
            s += &format!(": {}", self.field);
        }
        s + ": " + &self.message
    }
}

impl Violation {
    pub fn new(field: FieldPath, message: impl Into<String>) -> Self {
        Violation {
            field,
            message: message.into(),
            other: None,
        }
    }

    /// The violation names `other` too: the value this one clashes with.
    pub fn with(mut self, other: FieldPath) -> Self {
        self.other = Some(other);
        self
    }
}

/// The 1-based line of a byte offset (clamped to the text).
/// For an unknown field, `toml` may span the whole table that holds it (always so inside an
/// internally tagged enum); the key's own line is better. Finds the first line, from the span's
/// start to the next table header, that assigns the key.
fn unknown_key_offset(err: &toml::de::Error, src: &str) -> Option<usize> {
    let key = err
        .message()
        .strip_prefix("unknown field `")?
        .split('`')
        .next()?;
    let start = err.span()?.start;
    let mut offset = start;
    for (i, line) in src.get(start..)?.split_inclusive('\n').enumerate() {
        let t = line.trim_start();
        if i > 0 && t.starts_with('[') {
            break;
        }
        if let Some(rest) = t.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                return Some(offset + (line.len() - t.len()));
            }
        }
        offset += line.len();
    }
    None
}

fn line_at(src: &str, offset: usize) -> usize {
    let bytes = src.as_bytes();
    let end = offset.min(bytes.len());
    bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// A message on one line: the lines of `message`, trimmed and joined by `; `.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// Field paths
// ---------------------------------------------------------------------------------------------

impl FieldPath {
    /// The whole file.
    pub fn root() -> Self {
        FieldPath::default()
    }

    /// A path of plain keys separated by dots, e.g. `sddc.edges.uplink_ip`.
    pub fn new(dotted: &str) -> Self {
        dotted
            .split('.')
            .filter(|key| !key.is_empty())
            .fold(FieldPath::root(), FieldPath::key)
    }

    /// This path, then a table key.
    pub fn key(mut self, key: &str) -> Self {
        self.0.push(Step::Key(key.to_string()));
        self
    }

    /// This path, then an array index.
    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Step::Index(index));
        self
    }

    /// A violation of a rule by this field.
    pub fn violation(&self, message: impl Into<String>) -> Violation {
        Violation::new(self.clone(), message)
    }

    /// The byte range of this field in a document: the key that names it, or the element of its
    /// array. A field absent from the text (a default) falls back to the nearest parent that is
    /// present; `None` when not even the first step is.
    pub fn span_in<S>(&self, doc: &Document<S>) -> Option<Range<usize>> {
        let mut item = doc.as_item();
        let mut found = None;
        for step in &self.0 {
            let Some((next, key_span)) = child(item, step) else {
                break;
            };
            found = key_span.or_else(|| next.span()).or(found);
            item = next;
        }
        found
    }

    /// The deepest field of a document whose key or value holds the byte `offset`; the root when
    /// none does.
    fn at_offset(root: &Item, offset: usize) -> FieldPath {
        let mut best = FieldPath::root();
        search_offset(root, offset, &mut FieldPath::root(), &mut best);
        best
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(key) if i == 0 => write!(f, "{key}")?,
                Step::Key(key) => write!(f, ".{key}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The item one step below `item`, with the span of the key that names it (if a key does).
fn child<'a>(item: &'a Item, step: &Step) -> Option<(&'a Item, Option<Range<usize>>)> {
    match step {
        Step::Key(key) => {
            let (key, next) = item.as_table_like()?.get_key_value(key)?;
            Some((next, key.span()))
        }
        Step::Index(index) => Some((item.get(*index)?, None)),
    }
}

/// The steps from `item` to each of its children, in order.
fn child_steps(item: &Item) -> Vec<Step> {
    if let Some(table) = item.as_table_like() {
        return table
            .iter()
            .map(|(k, _)| Step::Key(k.to_string()))
            .collect();
    }
    let len = match item {
        Item::ArrayOfTables(tables) => tables.len(),
        Item::Value(value) => value.as_array().map_or(0, |array| array.len()),
        _ => 0,
    };
    (0..len).map(Step::Index).collect()
}

/// Depth-first search for [`FieldPath::at_offset`]. Every subtree is visited: the children of a
/// `[table]` are not inside the span of its header.
fn search_offset(item: &Item, offset: usize, here: &mut FieldPath, best: &mut FieldPath) {
    for step in child_steps(item) {
        let Some((next, key_span)) = child(item, &step) else {
            continue;
        };
        here.0.push(step);
        let holds = |span: Option<Range<usize>>| span.is_some_and(|s| span_holds(&s, offset));
        if (holds(key_span) || holds(next.span())) && here.0.len() > best.0.len() {
            *best = here.clone();
        }
        search_offset(next, offset, here, best);
        here.0.pop();
    }
}

/// Whether a span holds an offset; an empty span holds its own start.
fn span_holds(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

// ---------------------------------------------------------------------------------------------
// Parsing and the rules
// ---------------------------------------------------------------------------------------------

/// Parse a topology from text and check it; `origin` names the text in errors.
pub(crate) fn parse_and_validate(src: &str, origin: &str) -> Result<Topology, TopoError> {
    let topo: Topology =
        toml::from_str(src).map_err(|err| TopoError::from_toml(&err, src, origin))?;
    check(&topo).map_err(|violation| TopoError::from_violation(violation, src, origin))?;
    Ok(topo)
}

impl Topology {
    /// Check the rules of VMC and AWS; see [`check`].
    pub fn validate(&self) -> Result<(), Violation> {
        check(self)
    }
}

/// Check every rule of VMC and AWS a topology must follow; the first violation wins.
///
/// Rules run in this order: clusters and hosts, ENIs, names, network addresses of CIDRs, the
/// management CIDR, VPC subnets, SDDC segments, the S3 endpoint, VPC addresses, VMs, the Edge pair
/// and timing.
pub fn check(topo: &Topology) -> Result<(), Violation> {
    clusters(topo)?;
    enis(topo)?;
    names(topo)?;
    network_addresses(topo)?;
    management_cidr(topo)?;
    vpc_subnets(topo)?;
    segments(topo)?;
    s3_endpoint(topo)?;
    vpc_addresses(topo)?;
    route_tables(topo)?;
    vms(topo)?;
    edges(topo)?;
    timing(topo)?;
    links(topo)
}

/// At least one cluster with a host in cluster 1; at most 16 hosts a cluster, 20 clusters and 300
/// hosts in all.
fn clusters(topo: &Topology) -> Check {
    let clusters = &topo.sddc.clusters;
    let field = FieldPath::new("sddc.clusters");
    let Some(first) = clusters.first() else {
        return Err(
            field.violation("no cluster; cluster 1 runs the management components and the Edges")
        );
    };
    if first.hosts.is_empty() {
        return Err(field.index(0).key("hosts").violation(format!(
            "{} has no host; cluster 1 runs the management components and the Edges",
            first.name
        )));
    }
    if clusters.len() > MAX_CLUSTERS {
        return Err(field.violation(format!(
            "{} clusters; an SDDC holds at most {MAX_CLUSTERS}",
            clusters.len()
        )));
    }
    for (i, cluster) in clusters.iter().enumerate() {
        if cluster.hosts.is_empty() {
            return Err(field.clone().index(i).key("hosts").violation(format!(
                "{} has no host; a cluster holds at least one",
                cluster.name
            )));
        }
        if cluster.hosts.len() > MAX_HOSTS_PER_CLUSTER {
            return Err(field.clone().index(i).key("hosts").violation(format!(
                "{} has {} hosts; a cluster holds at most {MAX_HOSTS_PER_CLUSTER}",
                cluster.name,
                cluster.hosts.len()
            )));
        }
    }
    let hosts = topo.hosts().count();
    if hosts > MAX_HOSTS {
        return Err(field.violation(format!(
            "{hosts} hosts in all; an SDDC holds at most {MAX_HOSTS}"
        )));
    }
    Ok(())
}

/// An ENI for every cluster-1 host, and at most 17.
fn enis(topo: &Topology) -> Check {
    let enis = topo.vpc.enis.len();
    let field = FieldPath::new("vpc.enis");
    if let Some(cluster1) = topo.cluster1() {
        let hosts = cluster1.hosts.len();
        if enis < hosts {
            return Err(field.violation(format!(
                "{enis} ENIs for the {hosts} hosts of {}; every cluster-1 host needs its ENI",
                cluster1.name
            )));
        }
    }
    if enis > MAX_ENIS {
        return Err(field.violation(format!(
            "{enis} ENIs; VMC creates at most {MAX_ENIS} (16 hosts + 1 spare)"
        )));
    }
    Ok(())
}

/// Every node named, once: hosts, clusters, Edges, segments, VMs, subnets, ENIs, instances and
/// the S3 endpoint share one namespace. The lab and the VPC id may not be empty either.
fn names(topo: &Topology) -> Check {
    for (field, name) in [("name", &topo.name), ("vpc.id", &topo.vpc.id)] {
        if name.trim().is_empty() {
            return Err(FieldPath::new(field).violation("empty name"));
        }
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    for reserved in [crate::links::UNDERLAY, crate::links::VPC_ROUTER] {
        seen.insert(reserved.to_string(), "a node of every lab".to_string());
    }
    for (field, name) in node_names(topo) {
        if name.trim().is_empty() {
            return Err(field.violation("empty name"));
        }
        if !name_ok(name) {
            return Err(field.violation(format!(
                "{name:?}: a name is 1 to 63 letters, digits, `.`, `_` or `-`, starting with a \
                 letter or a digit"
            )));
        }
        if let Some(first) = seen.get(name) {
            return Err(field.violation(format!(
                "`{name}` already names {first}; every name must be unique"
            )));
        }
        seen.insert(name.to_string(), field.to_string());
    }
    // An Edge's interfaces are named after their segments, beside its uplink and HA ones.
    for (i, segment) in topo.sddc.segments.iter().enumerate() {
        if crate::links::EDGE_RESERVED_IFACES.contains(&segment.name.as_str()) {
            let field = FieldPath::new("sddc.segments").index(i).key("name");
            return Err(field.violation(format!(
                "`{}` names an interface of every Edge; a segment may not take it",
                segment.name
            )));
        }
    }
    // Each instance's ENI takes a name of its own: `eni-<instance>`.
    for (i, instance) in topo.vpc.instances.iter().enumerate() {
        let field = FieldPath::new("vpc.instances").index(i).key("name");
        let eni = crate::links::instance_eni_id(&instance.name);
        if let Some(first) = seen.get(&eni) {
            return Err(field.violation(format!(
                "instance `{}` has an ENI named `{eni}`, which already names {first}",
                instance.name
            )));
        }
        seen.insert(eni, format!("the ENI of instance {}", instance.name));
    }
    Ok(())
}

/// A name is 1 to 63 of `[A-Za-z0-9._-]`, the first a letter or a digit: safe in a file
/// name, a table and a terminal.
pub fn name_ok(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Every node name with the field that holds it, in file order.
fn node_names(topo: &Topology) -> Vec<(FieldPath, &str)> {
    let mut names = Vec::new();
    for (i, cluster) in topo.sddc.clusters.iter().enumerate() {
        let field = FieldPath::new("sddc.clusters").index(i);
        names.push((field.clone().key("name"), cluster.name.as_str()));
        for (j, host) in cluster.hosts.iter().enumerate() {
            names.push((field.clone().key("hosts").index(j), host.as_str()));
        }
    }
    let edges = &topo.sddc.edges;
    names.push((FieldPath::new("sddc.edges.active.name"), &edges.active.name));
    names.push((
        FieldPath::new("sddc.edges.standby.name"),
        &edges.standby.name,
    ));
    for (i, segment) in topo.sddc.segments.iter().enumerate() {
        let field = FieldPath::new("sddc.segments").index(i);
        names.push((field.clone().key("name"), segment.name.as_str()));
        for (j, vm) in segment.vms.iter().enumerate() {
            names.push((field.clone().key("vms").index(j).key("name"), &vm.name));
        }
    }
    let vpc = &topo.vpc;
    for (field, subnet) in vpc_subnet_fields(topo) {
        names.push((field.key("name"), subnet.name.as_str()));
    }
    for (i, eni) in vpc.enis.iter().enumerate() {
        names.push((FieldPath::new("vpc.enis").index(i).key("id"), &eni.id));
    }
    for (i, instance) in vpc.instances.iter().enumerate() {
        let field = FieldPath::new("vpc.instances").index(i).key("name");
        names.push((field, instance.name.as_str()));
    }
    if let Some(s3) = &vpc.s3_endpoint {
        names.push((FieldPath::new("vpc.s3_endpoint.name"), &s3.name));
    }
    names
}

/// Every CIDR written as its network address: no host bits set.
fn network_addresses(topo: &Topology) -> Check {
    for (field, net) in cidr_fields(topo) {
        if net.addr() != net.network() {
            return Err(field.violation(format!(
                "{net} has host bits set; the network is {}",
                net.trunc()
            )));
        }
    }
    Ok(())
}

/// Every CIDR of the file with its field.
fn cidr_fields(topo: &Topology) -> Vec<(FieldPath, Ipv4Net)> {
    let mut cidrs = vec![(
        FieldPath::new("sddc.management_cidr"),
        topo.sddc.management_cidr,
    )];
    for (i, segment) in topo.sddc.segments.iter().enumerate() {
        let field = FieldPath::new("sddc.segments").index(i).key("cidr");
        cidrs.push((field, segment.cidr));
    }
    cidrs.push((FieldPath::new("vpc.cidr"), topo.vpc.cidr));
    for (field, subnet) in vpc_subnet_fields(topo) {
        cidrs.push((field.key("cidr"), subnet.cidr));
    }
    if let Some(s3) = &topo.vpc.s3_endpoint {
        for (i, prefix) in s3.prefix_list.iter().enumerate() {
            let field = FieldPath::new("vpc.s3_endpoint.prefix_list").index(i);
            cidrs.push((field, *prefix));
        }
    }
    for (i, table) in topo.vpc.route_tables.iter().enumerate() {
        for (j, route) in table.routes.iter().enumerate() {
            let field = FieldPath::new("vpc.route_tables")
                .index(i)
                .key("routes")
                .index(j)
                .key("destination");
            cidrs.push((field, route.destination));
        }
    }
    cidrs
}

/// Custom route tables: ids `rtb-…`, unique, not the main table's; each associated with
/// subnets of the VPC other than the connected one, a subnet with one table at most; each
/// route to a destination outside the VPC CIDR (the local route covers it), once, through one
/// of the SDDC's ENIs.
fn route_tables(topo: &Topology) -> Check {
    let vpc = &topo.vpc;
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut associated: HashMap<&str, &str> = HashMap::new();
    for (i, table) in vpc.route_tables.iter().enumerate() {
        let field = FieldPath::new("vpc.route_tables").index(i);
        let id = table.id.as_str();
        if !id.starts_with("rtb-") || id.len() == 4 || id == "rtb-main" {
            return Err(field.key("id").violation(format!(
                "`{id}`: a route table id is `rtb-` and a name (`rtb-main` is the main table's)"
            )));
        }
        if ids.insert(id, i).is_some() {
            return Err(field
                .key("id")
                .violation(format!("`{id}` names two route tables")));
        }
        for (j, subnet) in table.subnets.iter().enumerate() {
            let field = field.clone().key("subnets").index(j);
            if *subnet == vpc.connected_subnet.name {
                return Err(field.violation(format!(
                    "{subnet} is the connected subnet: it keeps the main table, which VMC programs"
                )));
            }
            if !vpc.subnets.iter().any(|s| s.name == *subnet) {
                return Err(field.violation(format!("no subnet named `{subnet}` in vpc.subnets")));
            }
            if let Some(other) = associated.insert(subnet, id) {
                return Err(field.violation(format!(
                    "{subnet} is associated with {other} already; a subnet has one route table"
                )));
            }
        }
        for (j, route) in table.routes.iter().enumerate() {
            let field = field.clone().key("routes").index(j);
            let dest = route.destination;
            if overlaps(dest, vpc.cidr) {
                return Err(field
                    .key("destination")
                    .violation(format!(
                        "{dest} overlaps the VPC CIDR {}, which the local route holds",
                        vpc.cidr
                    ))
                    .with(FieldPath::new("vpc.cidr")));
            }
            if table.routes[..j].iter().any(|r| r.destination == dest) {
                return Err(field
                    .key("destination")
                    .violation(format!("{dest} has two routes in {id}")));
            }
            if !vpc.enis.iter().any(|e| e.id == route.target) {
                return Err(field.key("target").violation(format!(
                    "`{}` is none of vpc.enis; a custom route here targets an SDDC ENI",
                    route.target
                )));
            }
        }
    }
    Ok(())
}

/// The management CIDR: a /16, /20 or /23, clear of the ranges VMC reserves and of the VPC.
fn management_cidr(topo: &Topology) -> Check {
    let net = topo.sddc.management_cidr;
    let field = FieldPath::new("sddc.management_cidr");
    if !MANAGEMENT_PREFIXES.contains(&net.prefix_len()) {
        return Err(field.violation(format!(
            "{net} is a /{}; the management CIDR must be a /16, /20 or /23",
            net.prefix_len()
        )));
    }
    if let Some(reserved) = RESERVED_BY_VMC.iter().find(|r| overlaps(net, **r)) {
        return Err(field.violation(format!("{net} overlaps {reserved}, which VMC reserves")));
    }
    if overlaps(net, topo.vpc.cidr) {
        return Err(field
            .violation(format!("{net} overlaps the VPC CIDR {}", topo.vpc.cidr))
            .with(FieldPath::new("vpc.cidr")));
    }
    Ok(())
}

/// The connected subnet and the other subnets: inside the VPC CIDR, clear of each other.
fn vpc_subnets(topo: &Topology) -> Check {
    let vpc_cidr = topo.vpc.cidr;
    if !(16..=28).contains(&vpc_cidr.prefix_len()) {
        return Err(FieldPath::new("vpc.cidr").violation(format!(
            "{vpc_cidr} is a /{}; a VPC CIDR is a /16 to a /28 (AWS)",
            vpc_cidr.prefix_len()
        )));
    }
    let subnets = vpc_subnet_fields(topo);
    for (i, (field, subnet)) in subnets.iter().enumerate() {
        let field = field.clone().key("cidr");
        if !(16..=28).contains(&subnet.cidr.prefix_len()) {
            return Err(field.violation(format!(
                "{} is a /{}; a subnet is a /16 to a /28 (AWS)",
                subnet.cidr,
                subnet.cidr.prefix_len()
            )));
        }
        if !vpc_cidr.contains(&subnet.cidr) {
            return Err(field.violation(format!(
                "{} of subnet {} is not inside the VPC CIDR {vpc_cidr}",
                subnet.cidr, subnet.name
            )));
        }
        if let Some((other_field, other)) = subnets[..i]
            .iter()
            .find(|(_, other)| overlaps(subnet.cidr, other.cidr))
        {
            return Err(field
                .violation(format!(
                    "{} overlaps subnet {} ({})",
                    subnet.cidr, other.name, other.cidr
                ))
                .with(other_field.clone().key("cidr")));
        }
    }
    Ok(())
}

/// The VPC's subnets with their fields: the connected subnet, then the others.
fn vpc_subnet_fields(topo: &Topology) -> Vec<(FieldPath, &Subnet)> {
    let vpc = &topo.vpc;
    let others = vpc.subnets.iter().enumerate();
    std::iter::once((
        FieldPath::new("vpc.connected_subnet"),
        &vpc.connected_subnet,
    ))
    .chain(others.map(|(i, subnet)| (FieldPath::new("vpc.subnets").index(i), subnet)))
    .collect()
}

/// SDDC segments: clear of the VPC CIDR and of each other; CGW segments clear of the management
/// CIDR, MGW segments inside it.
fn segments(topo: &Topology) -> Check {
    let vpc_cidr = topo.vpc.cidr;
    let management = topo.sddc.management_cidr;
    let segments = &topo.sddc.segments;
    for (i, segment) in segments.iter().enumerate() {
        let field = FieldPath::new("sddc.segments").index(i).key("cidr");
        let cidr = segment.cidr;
        if cidr.prefix_len() > 30 {
            return Err(field.violation(format!(
                "{cidr} is a /{}: no room for its gateway ({} would lie outside) and a VM; a \
                 segment is a /30 or larger",
                cidr.prefix_len(),
                segment.gateway_ip()
            )));
        }
        if overlaps(cidr, vpc_cidr) {
            return Err(field
                .violation(format!(
                    "{cidr} overlaps the VPC CIDR {vpc_cidr}; SDDC segments may not"
                ))
                .with(FieldPath::new("vpc.cidr")));
        }
        if let Some(j) = segments[..i].iter().position(|o| overlaps(cidr, o.cidr)) {
            let other = &segments[j];
            let other_field = FieldPath::new("sddc.segments").index(j).key("cidr");
            return Err(field
                .violation(format!(
                    "{cidr} overlaps segment {} ({})",
                    other.name, other.cidr
                ))
                .with(other_field));
        }
        match segment.gateway {
            Gateway::Cgw if overlaps(cidr, management) => {
                return Err(field
                    .violation(format!(
                        "{cidr} overlaps the management CIDR {management}; a CGW segment may not"
                    ))
                    .with(FieldPath::new("sddc.management_cidr")));
            }
            Gateway::Mgw if !management.contains(&cidr) => {
                return Err(field.violation(format!(
                    "{cidr} is not inside the management CIDR {management}; an MGW segment must be"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The S3 prefix list clear of the VPC, the management CIDR and the segments; the S3 node's
/// address inside the prefix list.
fn s3_endpoint(topo: &Topology) -> Check {
    let Some(s3) = &topo.vpc.s3_endpoint else {
        return Ok(());
    };
    let vpc_cidr = topo.vpc.cidr;
    let management = topo.sddc.management_cidr;
    for (i, &prefix) in s3.prefix_list.iter().enumerate() {
        let field = FieldPath::new("vpc.s3_endpoint.prefix_list").index(i);
        if overlaps(prefix, vpc_cidr) {
            return Err(field
                .violation(format!(
                    "{prefix} overlaps the VPC CIDR {vpc_cidr}; the S3 prefix list may not"
                ))
                .with(FieldPath::new("vpc.cidr")));
        }
        if overlaps(prefix, management) {
            return Err(field
                .violation(format!(
                    "{prefix} overlaps the management CIDR {management}; the S3 prefix list \
                     may not"
                ))
                .with(FieldPath::new("sddc.management_cidr")));
        }
        let segments = &topo.sddc.segments;
        if let Some(k) = segments.iter().position(|s| overlaps(prefix, s.cidr)) {
            let segment = &segments[k];
            return Err(field
                .violation(format!(
                    "{prefix} overlaps segment {} ({}); the S3 prefix list may not",
                    segment.name, segment.cidr
                ))
                .with(FieldPath::new("sddc.segments").index(k).key("cidr")));
        }
    }
    if !s3.prefix_list.iter().any(|prefix| prefix.contains(&s3.ip)) {
        let list: Vec<String> = s3.prefix_list.iter().map(ToString::to_string).collect();
        return Err(FieldPath::new("vpc.s3_endpoint.ip").violation(format!(
            "{} is not inside the S3 prefix list [{}]",
            s3.ip,
            list.join(", ")
        )));
    }
    Ok(())
}

/// The addresses the VPC hands out (ENI primaries, the Edge uplink, instances): each inside its
/// subnet, on none of the subnet's five AWS-reserved addresses, and used once.
fn vpc_addresses(topo: &Topology) -> Check {
    let connected = &topo.vpc.connected_subnet;
    let mut addresses: Vec<(FieldPath, Ipv4Addr, &Subnet)> = Vec::new();
    for (i, eni) in topo.vpc.enis.iter().enumerate() {
        let field = FieldPath::new("vpc.enis").index(i).key("ip");
        addresses.push((field, eni.ip, connected));
    }
    let uplink = topo.sddc.edges.uplink_ip;
    addresses.push((FieldPath::new("sddc.edges.uplink_ip"), uplink, connected));
    for (i, instance) in topo.vpc.instances.iter().enumerate() {
        let field = FieldPath::new("vpc.instances").index(i);
        let Some(subnet) = topo.subnet(&instance.subnet) else {
            return Err(field.key("subnet").violation(format!(
                "instance {} is on {}, which is not a subnet of the VPC",
                instance.name, instance.subnet
            )));
        };
        addresses.push((field.key("ip"), instance.ip, subnet));
    }

    let mut seen: HashMap<Ipv4Addr, FieldPath> = HashMap::new();
    for (field, ip, subnet) in addresses {
        if !subnet.cidr.contains(&ip) {
            return Err(field.violation(format!(
                "{ip} is outside subnet {} ({})",
                subnet.name, subnet.cidr
            )));
        }
        if let Some(role) = aws_reserved(ip, subnet.cidr) {
            return Err(field.violation(format!(
                "{ip} is the {role} of subnet {}; AWS reserves the first four and the last \
                 address of a subnet",
                subnet.name
            )));
        }
        if let Some(first) = seen.get(&ip) {
            return Err(field.violation(format!("{ip} is already the address of {first}")));
        }
        seen.insert(ip, field);
    }
    Ok(())
}

/// What AWS keeps an address of a subnet for, if it does: base, router, DNS, future use, and the
/// last address.
fn aws_reserved(ip: Ipv4Addr, subnet: Ipv4Net) -> Option<&'static str> {
    if ip == subnet.broadcast() {
        return Some("broadcast address");
    }
    match u32::from(ip).wrapping_sub(u32::from(subnet.network())) {
        0 => Some("network address"),
        1 => Some("VPC router (base+1)"),
        2 => Some("DNS server (base+2)"),
        3 => Some("reserved address (base+3)"),
        _ => None,
    }
}

/// VMs: inside their segment and on none of its network, gateway or broadcast addresses; each
/// address used once; on a host of the SDDC.
fn vms(topo: &Topology) -> Check {
    let hosts: HashSet<&str> = topo.hosts().collect();
    let mut seen: HashMap<Ipv4Addr, FieldPath> = HashMap::new();
    for (i, segment) in topo.sddc.segments.iter().enumerate() {
        for (j, vm) in segment.vms.iter().enumerate() {
            let field = FieldPath::new("sddc.segments").index(i).key("vms").index(j);
            let ip_field = field.clone().key("ip");
            if !segment.cidr.contains(&vm.ip) {
                return Err(ip_field.violation(format!(
                    "{} is outside segment {} ({})",
                    vm.ip, segment.name, segment.cidr
                )));
            }
            if let Some(role) = segment_reserved(vm.ip, segment) {
                return Err(ip_field.violation(format!(
                    "{} is the {role} of segment {}",
                    vm.ip, segment.name
                )));
            }
            if let Some(first) = seen.get(&vm.ip) {
                return Err(
                    ip_field.violation(format!("{} is already the address of {first}", vm.ip))
                );
            }
            seen.insert(vm.ip, ip_field);
            if !hosts.contains(vm.host.as_str()) {
                return Err(field.key("host").violation(format!(
                    "VM {} runs on {}, which is not a host of the SDDC",
                    vm.name, vm.host
                )));
            }
        }
    }
    Ok(())
}

/// What a segment keeps an address for, if it does: network, gateway and broadcast.
fn segment_reserved(ip: Ipv4Addr, segment: &Segment) -> Option<&'static str> {
    if ip == segment.cidr.network() {
        Some("network address")
    } else if ip == segment.gateway_ip() {
        Some("gateway address")
    } else if ip == segment.cidr.broadcast() {
        Some("broadcast address")
    } else {
        None
    }
}

/// The Edge pair: both on hosts of cluster 1, on two different hosts.
fn edges(topo: &Topology) -> Check {
    let edges = &topo.sddc.edges;
    let (cluster1, hosts) = topo
        .cluster1()
        .map_or(("cluster 1", &[][..]), |c| (c.name.as_str(), &c.hosts[..]));
    for (role, edge) in [("active", &edges.active), ("standby", &edges.standby)] {
        if !hosts.contains(&edge.host) {
            return Err(FieldPath::new("sddc.edges")
                .key(role)
                .key("host")
                .violation(format!(
                    "{} runs on {}, which is not a host of {cluster1}; the Edges run in cluster 1",
                    edge.name, edge.host
                )));
        }
    }
    if edges.active.host == edges.standby.host {
        return Err(FieldPath::new("sddc.edges.standby.host").violation(format!(
            "{} runs on {} like {}; the Edge pair needs two hosts",
            edges.standby.name, edges.standby.host, edges.active.name
        )));
    }
    Ok(())
}

/// Timing: a non-zero stun, a BFD interval of 1 ms to 60 s and a multiplier of 2 to 16, a route
/// table quota that holds a route per segment plus the local route.
fn timing(topo: &Topology) -> Check {
    let timing = &topo.timing;
    for (field, value) in [
        ("timing.vmotion_stun", timing.vmotion_stun),
        ("timing.bfd_interval", timing.bfd_interval),
    ] {
        if value.is_zero() {
            return Err(FieldPath::new(field).violation("must be longer than zero"));
        }
    }
    if !BFD_INTERVALS.contains(&timing.bfd_interval) {
        return Err(FieldPath::new("timing.bfd_interval").violation(format!(
            "{:?} is outside {:?}..={:?}",
            timing.bfd_interval,
            BFD_INTERVALS.start(),
            BFD_INTERVALS.end()
        )));
    }
    let multiplier = timing.bfd_multiplier;
    if !BFD_MULTIPLIERS.contains(&multiplier) {
        return Err(FieldPath::new("timing.bfd_multiplier").violation(format!(
            "{multiplier} is outside {}..={}",
            BFD_MULTIPLIERS.start(),
            BFD_MULTIPLIERS.end()
        )));
    }
    let quota = timing.route_table_quota;
    let field = FieldPath::new("timing.route_table_quota");
    if quota == 0 {
        return Err(field.violation("0 routes; the main route table needs the local route"));
    }
    let segments = topo.sddc.segments.len();
    let needed = segments.saturating_add(1);
    if usize::try_from(quota).is_ok_and(|quota| quota < needed) {
        return Err(field.violation(format!(
            "{quota} routes cannot hold the {needed} of the main route table: \
             one per SDDC segment ({segments}) and the local route"
        )));
    }
    Ok(())
}

/// The largest frame a link may carry, in bytes: a 1500-byte IP packet in Ethernet (1514) inside
/// Geneve (50 more).
pub const MAX_LINK_FRAME: u64 = 1564;
/// The IP MTUs a link may have, in bytes: IPv4's 576 to jumbo frames'.
pub const LINK_MTUS: RangeInclusive<u32> = 576..=9216;
/// Bytes Geneve adds to an inner Ethernet frame, counted in the underlay's IP MTU: inner
/// Ethernet (14), Geneve (8), UDP (8), outer IPv4 (20).
pub const GENEVE_OVERHEAD: u32 = 50;
/// The longest one-way delay a link may have.
pub const MAX_LINK_DELAY: std::time::Duration = std::time::Duration::from_secs(10);

/// Links: each kind's and each override's delay at most 10 s and queue large enough for a full
/// frame; every override names a link of the lab.
fn links(topo: &Topology) -> Check {
    let l = &topo.links;
    let opts = LinkKind::ALL
        .iter()
        .map(|k| (FieldPath::new("links").key(k.as_str()), l.kind_opt(*k)))
        .chain(
            l.overrides
                .iter()
                .map(|(name, o)| (FieldPath::new("links").key("overrides").key(name), o)),
        );
    for (path, opt) in opts {
        if let Some(d) = opt.delay.filter(|d| *d > MAX_LINK_DELAY) {
            return Err(path
                .key("delay")
                .violation(format!("{d:?} is longer than {MAX_LINK_DELAY:?}")));
        }
        if let Some(m) = opt.mtu.filter(|m| !LINK_MTUS.contains(m)) {
            return Err(path.key("mtu").violation(format!(
                "{m} is outside {}..={} bytes",
                LINK_MTUS.start(),
                LINK_MTUS.end()
            )));
        }
        if let Some(q) = opt.queue.filter(|q| q.0 < MAX_LINK_FRAME) {
            return Err(path.key("queue").violation(format!(
                "{q} cannot hold one full frame ({MAX_LINK_FRAME} bytes)"
            )));
        }
    }
    // The underlay carries a segment's largest packet in Geneve: 50 bytes more.
    let plan = topo.link_plan();
    // Every link's queue holds one of its largest frames: its MTU and 14 bytes of Ethernet.
    for p in &plan {
        let spec = l.spec(&p.name, p.kind);
        let frame = u64::from(spec.mtu) + 14;
        if spec.queue.0 < frame {
            let own = l
                .overrides
                .get(&p.name)
                .is_some_and(|o| o.queue.is_some() || o.mtu.is_some());
            let path = if own {
                FieldPath::new("links")
                    .key("overrides")
                    .key(&p.name)
                    .key("queue")
            } else {
                FieldPath::new("links").key(p.kind.as_str()).key("queue")
            };
            return Err(path.violation(format!(
                "{} cannot hold one full frame of {} ({frame} bytes with its MTU of {})",
                spec.queue, p.name, spec.mtu
            )));
        }
    }
    let widest = plan
        .iter()
        .filter(|p| p.kind == LinkKind::Vnic)
        .map(|p| (l.spec(&p.name, p.kind).mtu, p.name.as_str()))
        .max();
    if let Some((vnic_mtu, vnic)) = widest {
        let need = vnic_mtu.saturating_add(GENEVE_OVERHEAD);
        for p in plan.iter().filter(|p| p.kind == LinkKind::Underlay) {
            let mtu = l.spec(&p.name, p.kind).mtu;
            if mtu < need {
                let path = if l.overrides.get(&p.name).is_some_and(|o| o.mtu.is_some()) {
                    FieldPath::new("links")
                        .key("overrides")
                        .key(&p.name)
                        .key("mtu")
                } else {
                    FieldPath::new("links").key("underlay").key("mtu")
                };
                return Err(path.violation(format!(
                    "{} has MTU {mtu}: too small for {vnic}'s {vnic_mtu}-byte packets in Geneve \
                     ({need} bytes)",
                    p.name
                )));
            }
        }
    }
    if !l.overrides.is_empty() {
        let plan: HashSet<String> = plan.into_iter().map(|p| p.name).collect();
        if let Some(name) = l.overrides.keys().find(|n| !plan.contains(*n)) {
            return Err(FieldPath::new("links")
                .key("overrides")
                .key(name)
                .violation(format!(
                    "no link is named `{name}`; links are named after the nodes they join, \
                     e.g. `web-1--esxi-1`, `esxi-1--underlay`, `esxi-1--eni-1`, `eni-1--vpc-router`"
                )));
        }
    }
    Ok(())
}

/// Whether two networks share an address.
fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(src: &str) -> Document<&str> {
        Document::parse(src).expect("valid TOML")
    }

    fn line_of_path(src: &str, path: &FieldPath) -> Option<usize> {
        path.span_in(&doc(src)).map(|span| line_at(src, span.start))
    }

    #[test]
    fn field_path_displays_keys_and_indices() {
        let path = FieldPath::new("sddc.clusters")
            .index(0)
            .key("hosts")
            .index(3);
        assert_eq!(path.to_string(), "sddc.clusters[0].hosts[3]");
        assert_eq!(FieldPath::root().to_string(), "");
        assert_eq!(
            FieldPath::new("vpc.enis").index(3).key("ip").to_string(),
            "vpc.enis[3].ip"
        );
    }

    #[test]
    fn span_finds_keys_tables_and_inline_values() {
        let src = "name = \"x\"\n\n[sddc]\nclusters = [\n  { name = \"c\", hosts = [\"a\", \"b\"] },\n]\n\n[[vpc.enis]]\nid = \"eni-1\"\n\n[[vpc.enis]]\nid = \"eni-2\"\nip = \"1.2.3.4\"\n";
        let at = |dotted: FieldPath| line_of_path(src, &dotted);
        assert_eq!(at(FieldPath::new("name")), Some(1));
        assert_eq!(at(FieldPath::new("sddc")), Some(3));
        assert_eq!(at(FieldPath::new("sddc.clusters")), Some(4));
        let cluster = FieldPath::new("sddc.clusters").index(0);
        assert_eq!(at(cluster.clone().key("hosts").index(1)), Some(5));
        assert_eq!(at(FieldPath::new("vpc.enis")), Some(8));
        assert_eq!(at(FieldPath::new("vpc.enis").index(1)), Some(11));
        assert_eq!(at(FieldPath::new("vpc.enis").index(1).key("ip")), Some(13));
    }

    #[test]
    fn span_falls_back_to_the_nearest_present_parent() {
        let src = "name = \"x\"\n[timing]\nbfd_multiplier = 3\n";
        assert_eq!(
            line_of_path(src, &FieldPath::new("timing.route_table_quota")),
            Some(2)
        );
        assert_eq!(line_of_path(src, &FieldPath::new("sddc.segments")), None);
        let past_end = FieldPath::new("timing.bfd_multiplier").index(7).key("x");
        assert_eq!(line_of_path(src, &past_end), Some(3));
    }

    #[test]
    fn offset_finds_the_deepest_field() {
        let src = "[sddc]\nedges = { active = { name = \"e\" } }\n";
        let offset = src.find("\"e\"").unwrap();
        let path = FieldPath::at_offset(doc(src).as_item(), offset);
        assert_eq!(path.to_string(), "sddc.edges.active.name");
        assert_eq!(
            FieldPath::at_offset(doc(src).as_item(), 0).to_string(),
            "sddc"
        );
    }

    #[test]
    fn lines_are_counted_from_one_and_clamped() {
        assert_eq!(line_at("a\nb\nc", 0), 1);
        assert_eq!(line_at("a\nb\nc", 2), 2);
        assert_eq!(line_at("a\nb\nc", 99), 3);
    }

    #[test]
    fn messages_are_kept_on_one_line() {
        assert_eq!(
            one_line("invalid string\n  expected `\"`\n"),
            "invalid string; expected `\"`"
        );
    }

    #[test]
    fn aws_reserves_five_addresses_a_subnet() {
        let subnet: Ipv4Net = "172.31.0.0/26".parse().unwrap();
        let reserved: Vec<u8> = (0..=255u8)
            .filter(|&last| aws_reserved(Ipv4Addr::new(172, 31, 0, last), subnet).is_some())
            .collect();
        assert_eq!(reserved, [0, 1, 2, 3, 63]);
    }

    #[test]
    fn overlap_is_symmetric() {
        let a: Ipv4Net = "10.0.0.0/15".parse().unwrap();
        let b: Ipv4Net = "10.1.2.0/24".parse().unwrap();
        let c: Ipv4Net = "10.2.0.0/16".parse().unwrap();
        assert!(overlaps(a, b) && overlaps(b, a));
        assert!(!overlaps(a, c) && !overlaps(c, a));
    }
}
