//! A drill as one SVG picture: its probes and its actions on one axis of virtual time.
//!
//! Each probe item gives two lanes, one per direction (`web-1 → ec2-1 (SDDC → VPC)`, then
//! back), headed with the measured outage and the expected one. In a lane, every run of lost
//! probes is a red span from the first lost probe's sending to one interval past the last one's
//! (so its width is the run's outage), and a blue line is the one-way delay of what arrived:
//! the largest of each delay bin, scaled to the lane's own largest. Every action that took effect
//! is a grey vertical line at that instant; one that failed is a dashed orange line at the
//! instant it was asked for. Actions of one instant share a line and a label; the labels sit
//! above the lanes, staggered over a few rows so that none overlaps another or crosses a line,
//! and one that finds no room keeps only its number, or nothing. Below the axis, a list gives
//! every instant's actions in full, numbered, with the reasons of failures.
//!
//! # The time axis
//!
//! Drills mix two time scales: what the data path loses plays out in seconds (a stun of 0.5 s,
//! a reconciler that notices in 5 s, routes replaced in 2 s), while the slower machinery leaves
//! minutes between its steps (vSphere HA after 2 minutes, a replacement host after 30).
//! maintenance-rolling probes for 6000 s with its outages near 1816 s, 3815 s and 5815 s; one
//! linear axis over all of it would draw a 7.5 s outage 1 pixel wide. So the axis is cut: the
//! instants that matter (every action's, every run of loss, and the first and last probe) are
//! gathered into windows wherever less than [`JOIN_S`] seconds separate them, and only these
//! windows are drawn, side by side, each with its own linear scale and tick labels; the cuts
//! between them are marked on the axis. A window of nothing but a probe's start or end is left
//! out (the probes ran on, losing nothing). A window gets a width in proportion to the time it
//! spans, but at least [`MIN_PANEL_SHARE`] of the whole, so that a lone action keeps a readable
//! sliver. Short drills come out as one window over the whole probe: edge-vmotion's 0.5–12.5 s.
//! What a cut hides is only delay: no loss and no action ever falls in one.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

use plotters::backend::SVGBackend;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::DrillReport;
use crate::node::endpoint::probe::{LostRun, ProbeLoss, DELAY_BINS};
use crate::node::endpoint::AppReport;

/// Instants of interest closer than this (in seconds of virtual time) share a window of the axis.
pub const JOIN_S: f64 = 20.0;
/// The narrowest a window of the axis is drawn, as a share of the time all windows span.
pub const MIN_PANEL_SHARE: f64 = 0.06;
/// Windows drawn at most: past this, the two closest are drawn as one.
const MAX_PANELS: usize = 8;
/// Space around what a window holds: this share of its span, at least [`MIN_PAD_S`].
const PAD_SHARE: f64 = 0.04;
const MIN_PAD_S: f64 = 0.5;

/// The fill of a span of lost probes, as it appears in the SVG.
pub const LOSS_FILL: &str = "#D62728";
/// The stroke of a failed action's marker, as it appears in the SVG.
pub const FAILED_STROKE: &str = "#E67E00";
/// The stroke of the marker of an action that took effect, as it appears in the SVG.
pub const ACTION_STROKE: &str = "#505050";

const LOSS: RGBColor = RGBColor(0xD6, 0x27, 0x28);
const FAILED: RGBColor = RGBColor(0xE6, 0x7E, 0x00);
const ACTION: RGBColor = RGBColor(0x50, 0x50, 0x50);
const DELAY: RGBColor = RGBColor(0x1F, 0x77, 0xB4);
const MUTED: RGBColor = RGBColor(0x6E, 0x6E, 0x6E);
const LANE_BACKGROUND: RGBColor = RGBColor(0xF2, 0xF2, 0xF2);
const GRID: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);

/// Picture width, and the left and right edges of the plot, in pixels.
const WIDTH: i32 = 1000;
const PLOT_LEFT: i32 = 16;
const PLOT_RIGHT: i32 = WIDTH - 16;
/// Pixels between two windows of the axis.
const PANEL_GAP: i32 = 16;
/// Font sizes as plotters takes them (it writes size / 1.24 into the SVG).
const TITLE_FONT: f64 = 22.0;
const TEXT_FONT: f64 = 14.0;
const SMALL_FONT: f64 = 13.0;
/// Rows of action labels above the lanes, and the height of one.
const TAG_ROWS: usize = 4;
const TAG_ROW_H: i32 = 15;
/// A lane: two lines of heading, then the band its data is drawn in, then a gap.
const LANE_HEAD_H: i32 = 32;
const LANE_BAND_H: i32 = 40;
const LANE_H: i32 = LANE_HEAD_H + LANE_BAND_H + 8;
/// The plot's height when there are no probes (only the actions' markers).
const EMPTY_PLOT_H: i32 = 36;
/// The tick labels under the plot.
const AXIS_H: i32 = 22;
const LIST_LINE_H: i32 = 16;
/// Characters of an action label above the lanes; the list below gives them in full.
const TAG_CHARS: usize = 48;
/// Characters of one line of the list below the axis.
const LIST_CHARS: usize = 140;

/// Draw `report` as one SVG document.
pub fn render(report: &DrillReport) -> String {
    picture(report).svg
}

/// A drill's picture and where things are in it.
#[derive(Debug, Clone)]
pub struct Picture {
    /// The SVG document.
    pub svg: String,
    /// How virtual time maps onto x.
    pub axis: TimeAxis,
    /// One per probe direction, top to bottom.
    pub lanes: Vec<LanePlace>,
}

/// Where a lane is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct LanePlace {
    /// Its heading's first words: `web-1 → ec2-1 (SDDC → VPC)`.
    pub title: String,
    /// The pixel rows of the band its losses and delay are drawn in: `top..bottom`.
    pub band: std::ops::Range<i32>,
}

/// A span of virtual time, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Its first and last instant.
    pub from: f64,
    pub to: f64,
}

impl Span {
    fn at(t: f64) -> Span {
        Span { from: t, to: t }
    }

    fn len(self) -> f64 {
        self.to - self.from
    }

    fn contains(self, t: f64) -> bool {
        self.from <= t && t <= self.to
    }

    /// Wider by a share of its length (at least [`MIN_PAD_S`]) each side; not before zero.
    fn padded(self) -> Span {
        let pad = (self.len() * PAD_SHARE).max(MIN_PAD_S);
        Span {
            from: (self.from - pad).max(0.0),
            to: self.to + pad,
        }
    }
}

/// A window of the time axis: a span of virtual time drawn linearly across a band of pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Panel {
    /// The virtual time it shows.
    pub seconds: Span,
    /// Its left pixel and its width in pixels.
    pub left: i32,
    pub width: i32,
}

impl Panel {
    /// The pixel column of `t` seconds, rounded as plotters rounds its own coordinates.
    pub fn x(&self, t: f64) -> i32 {
        let share = (t - self.seconds.from) / self.seconds.len();
        self.left + (f64::from(self.width) * share + 1e-3).floor() as i32
    }

    /// Its scale.
    pub fn pixels_per_second(&self) -> f64 {
        f64::from(self.width) / self.seconds.len()
    }
}

/// The time axis: its windows, left to right; what lies between two is cut out.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeAxis {
    /// Left to right, in time order.
    pub panels: Vec<Panel>,
}

impl TimeAxis {
    /// The window `t` seconds is drawn in; `None` in a cut.
    pub fn panel_of(&self, t: f64) -> Option<&Panel> {
        self.panels.iter().find(|p| p.seconds.contains(t))
    }

    /// The pixel column of `t` seconds; `None` in a cut.
    pub fn x(&self, t: f64) -> Option<i32> {
        self.panel_of(t).map(|p| p.x(t))
    }
}

/// One direction of a probe item, or a TCP item's stall, as the picture needs it.
struct Lane<'a> {
    title: String,
    /// A TCP lane's loss is made here: its one "run" is the longest stall.
    loss: Cow<'a, ProbeLoss>,
    /// A TCP item: the head says what stalled, and there is no delay to draw.
    tcp: Option<TcpHead>,
    /// Seconds between two probes, and covered by one delay bin.
    interval: f64,
    bin: f64,
    /// From the first probe sent to one interval past the last.
    probing: Span,
    expected: Option<&'a super::report::ExpectedOutage>,
}

impl Lane<'_> {
    /// Each run of lost probes, from the first one's sending to one interval past the last's.
    fn lost_spans(&self) -> impl Iterator<Item = Span> + '_ {
        self.loss.lost_runs.iter().map(|r| Span {
            from: r.first_sent.as_secs_f64(),
            to: r.last_sent.as_secs_f64() + self.interval,
        })
    }

    /// The largest one-way delay, in milliseconds.
    fn max_delay_ms(&self) -> f64 {
        self.loss
            .delay
            .iter()
            .map(|b| b.max.as_secs_f64() * 1e3)
            .fold(0.0, f64::max)
    }
}

/// The lanes of every probe item: there, then back.
fn lanes(report: &DrillReport) -> Vec<Lane<'_>> {
    let mut lanes = Vec::new();
    for step in &report.steps {
        let (Some(p), AppReport::Probe(app)) = (&step.probe, &step.app) else {
            continue;
        };
        let ends = [
            (&step.from, &step.to, p.kinds[0], p.kinds[1]),
            (&step.to, &step.from, p.kinds[1], p.kinds[0]),
        ];
        for (k, ((a, b, ka, kb), loss)) in ends.into_iter().zip([&p.there, &p.back]).enumerate() {
            let interval = app.interval.as_secs_f64();
            let start = app.started.as_secs_f64();
            let per_bin = loss.sent.div_ceil(DELAY_BINS).max(1);
            lanes.push(Lane {
                title: format!("{a} → {b} ({} → {})", ka.side(), kb.side()),
                loss: Cow::Borrowed(loss),
                tcp: None,
                interval,
                bin: interval * f64::from(per_bin),
                probing: Span {
                    from: start,
                    to: start + interval * f64::from(loss.sent),
                },
                expected: p.expected.get(k).and_then(Option::as_ref),
            });
        }
    }
    lanes.extend(report.steps.iter().filter_map(tcp_lane));
    lanes
}

/// What a TCP lane's head says.
struct TcpHead {
    stall: f64,
    retransmits: u64,
    survived: bool,
}

/// A TCP item's lane: the time it ran, and its longest stall (data unacknowledged and no
/// acknowledgement advancing; live, iperf3's intervals that moved nothing) drawn as loss. Only
/// for an item that stalled.
fn tcp_lane(step: &super::report::StepResult) -> Option<Lane<'_>> {
    let AppReport::TcpSend(tcp) = &step.app else {
        return None;
    };
    let from = tcp.longest_stall_from?;
    if tcp.longest_stall.is_zero() {
        return None;
    }
    let stall = tcp.longest_stall;
    let loss = ProbeLoss {
        sent: 1,
        received: 0,
        lost: 1,
        first_lost_sent: Some(from),
        last_lost_sent: Some(from),
        outage: stall,
        lost_runs: vec![LostRun {
            first_sent: from,
            last_sent: from,
            count: 1,
        }],
        lost_runs_truncated: false,
        delay: Vec::new(),
    };
    let start = step.started_s;
    Some(Lane {
        title: format!("{} → {} TCP", step.from, step.to),
        loss: Cow::Owned(loss),
        tcp: Some(TcpHead {
            stall: stall.as_secs_f64(),
            retransmits: tcp.retransmits,
            survived: tcp.error.is_none() && tcp.finished.is_some(),
        }),
        interval: stall.as_secs_f64(),
        bin: stall.as_secs_f64(),
        probing: Span {
            from: start,
            to: (start + step.duration_s).max(from.as_secs_f64() + stall.as_secs_f64()),
        },
        expected: None,
    })
}

/// Actions at one instant: those that took effect then, or those asked for then that failed.
struct Mark {
    at: f64,
    failed: bool,
    /// Each action, and why it failed.
    actions: Vec<(String, Option<String>)>,
}

impl Mark {
    /// The label above the lanes: its number and its actions, as many as fit.
    fn tag(&self, number: usize) -> String {
        let cross = if self.failed { "✗ " } else { "" };
        let mut tag = format!("{number} {cross}{}", self.actions[0].0);
        for (k, (action, _)) in self.actions.iter().enumerate().skip(1) {
            let more = format!(" +{} more", self.actions.len() - k);
            if chars(&tag) + 2 + chars(action) + more.len() > TAG_CHARS {
                tag += &more;
                break;
            }
            tag += "; ";
            tag += action;
        }
        tag
    }

    /// Its actions in full, for the list below the axis.
    fn described(&self) -> Vec<String> {
        self.actions
            .iter()
            .map(|(action, error)| match error {
                Some(why) => format!("✗ {action} failed: {why}"),
                None => action.clone(),
            })
            .collect()
    }
}

/// The timeline's actions grouped by instant, in time order (at one instant, those that took
/// effect first); actions still pending at the end have no instant and are left out.
fn marks(report: &DrillReport) -> Vec<Mark> {
    let mut by_instant: BTreeMap<(u64, bool), Mark> = BTreeMap::new();
    for e in &report.timeline {
        let (at, failed) = match (e.took_effect_at, &e.error) {
            (Some(t), _) => (t, false),
            (None, Some(_)) => (e.requested_at, true),
            (None, None) => continue,
        };
        by_instant
            .entry((at.as_nanos(), failed))
            .or_insert_with(|| Mark {
                at: at.as_secs_f64(),
                failed,
                actions: Vec::new(),
            })
            .actions
            .push((e.action.to_string(), e.error.clone()));
    }
    by_instant.into_values().collect()
}

/// The windows of virtual time to draw (see the module's doc).
fn windows(lanes: &[Lane], marks: &[Mark], end_s: f64) -> Vec<Span> {
    // Each instant or span of interest, and whether it is more than a probe's start or end.
    let mut points: Vec<(Span, bool)> = marks.iter().map(|m| (Span::at(m.at), true)).collect();
    for lane in lanes {
        points.extend(lane.lost_spans().map(|s| (s, true)));
        points.push((Span::at(lane.probing.from), false));
        points.push((Span::at(lane.probing.to), false));
    }
    if !points.iter().any(|(_, real)| *real) {
        let whole = lanes
            .iter()
            .map(|l| l.probing)
            .reduce(|a, b| Span {
                from: a.from.min(b.from),
                to: a.to.max(b.to),
            })
            .unwrap_or(Span {
                from: 0.0,
                to: end_s,
            });
        return vec![whole.padded()];
    }
    points.sort_by(|a, b| a.0.from.total_cmp(&b.0.from));
    let mut clusters: Vec<(Span, bool)> = Vec::new();
    for (span, real) in points {
        match clusters.last_mut() {
            Some((c, r)) if span.from - c.to <= JOIN_S => {
                c.to = c.to.max(span.to);
                *r |= real;
            }
            _ => clusters.push((span, real)),
        }
    }
    let mut windows: Vec<Span> = Vec::new();
    for span in clusters.into_iter().filter(|c| c.1).map(|c| c.0.padded()) {
        match windows.last_mut() {
            Some(w) if span.from <= w.to => w.to = w.to.max(span.to),
            _ => windows.push(span),
        }
    }
    while windows.len() > MAX_PANELS {
        let closest = (1..windows.len())
            .min_by(|&a, &b| {
                let gap = |k: usize| windows[k].from - windows[k - 1].to;
                gap(a).total_cmp(&gap(b))
            })
            .expect("more than one window");
        windows[closest - 1].to = windows[closest].to;
        windows.remove(closest);
    }
    windows
}

/// Lay `windows` side by side across the plot's width (see the module's doc).
fn time_axis(windows: &[Span]) -> TimeAxis {
    let n = windows.len() as i32;
    let room = f64::from(PLOT_RIGHT - PLOT_LEFT - PANEL_GAP * (n - 1));
    let total: f64 = windows.iter().map(|w| w.len()).sum();
    let weights: Vec<f64> = windows
        .iter()
        .map(|w| w.len().max(MIN_PANEL_SHARE * total))
        .collect();
    let sum: f64 = weights.iter().sum();
    let mut before = 0.0;
    let panels = windows
        .iter()
        .zip(&weights)
        .enumerate()
        .map(|(k, (w, weight))| {
            let start = (room * before / sum).round() as i32;
            before += weight;
            let end = (room * before / sum).round() as i32;
            Panel {
                seconds: *w,
                left: PLOT_LEFT + PANEL_GAP * k as i32 + start,
                width: end - start,
            }
        })
        .collect();
    TimeAxis { panels }
}

/// An action label placed above the lanes.
struct Tag {
    text: String,
    /// Its row: 0 just above the lanes, up to [`TAG_ROWS`] - 1.
    row: usize,
    /// Its marker's column, and the columns its text covers.
    x: i32,
    covers: (i32, i32),
    /// The text runs left of the line, ending there (else right of it, starting there).
    leftward: bool,
}

/// Roughly the width of `text` in pixels at `font` (sans-serif, as plotters sizes it).
fn text_width(text: &str, font: f64) -> i32 {
    (chars(text) as f64 * font / 1.24 * 0.58).ceil() as i32
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// Place each mark's label in the lowest row where it overlaps no other label and crosses no
/// other marker's line, running right of its line or else left of it; failing that, its number
/// alone; failing that, no label. Labels mostly run rightwards from their line, so they are
/// placed right to left: a label then lies above the lines it passes, which start lower.
fn place_tags(marks: &[Mark], axis: &TimeAxis) -> Vec<Option<Tag>> {
    let mut tags: Vec<Option<Tag>> = marks.iter().map(|_| None).collect();
    for (k, m) in marks.iter().enumerate().rev() {
        let x = axis.x(m.at).expect("every action is in a window");
        let (full, number) = (m.tag(k + 1), (k + 1).to_string());
        let candidates = [
            (full.clone(), false),
            (full, true),
            (number.clone(), false),
            (number, true),
        ];
        tags[k] = candidates.into_iter().find_map(|(text, leftward)| {
            let w = text_width(&text, SMALL_FONT);
            // Rightward unless that passes the plot's right edge.
            let leftward = leftward || x + 3 + w > PLOT_RIGHT;
            let covers = if leftward {
                (x - 3 - w, x)
            } else {
                (x, x + 3 + w)
            };
            if covers.0 < PLOT_LEFT {
                return None;
            }
            let fits_in = |row: &usize| tags.iter().flatten().all(|p| fits((*row, x, covers), p));
            // A label running left goes as high as it can, to leave room below it for
            // the lines of the marks left of it.
            let row = if leftward {
                (0..TAG_ROWS).rev().find(fits_in)
            } else {
                (0..TAG_ROWS).find(fits_in)
            }?;
            Some(Tag {
                text,
                row,
                x,
                covers,
                leftward,
            })
        });
    }
    tags
}

/// Whether a label in `row`, for a line at `x`, covering `covers`, leaves `placed` readable.
fn fits((row, x, covers): (usize, i32, (i32, i32)), placed: &Tag) -> bool {
    match placed.row.cmp(&row) {
        Ordering::Equal => covers.1 + 4 < placed.covers.0 || placed.covers.1 + 4 < covers.0,
        // A label above: its line comes down through this row.
        Ordering::Greater => !(covers.0..=covers.1).contains(&placed.x),
        // A label below: this one's line goes down through it.
        Ordering::Less => !(placed.covers.0..=placed.covers.1).contains(&x),
    }
}

/// Where everything goes, top to bottom.
struct Layout {
    /// The bottom of the lowest row of action labels.
    tags_bottom: i32,
    plot_top: i32,
    plot_bottom: i32,
    list_top: i32,
    height: i32,
}

impl Layout {
    fn new(tag_rows: usize, lanes: usize, list_lines: usize) -> Layout {
        let tags_bottom = 64 + tag_rows as i32 * TAG_ROW_H;
        let plot_top = tags_bottom + 4;
        let plot_h = if lanes == 0 {
            EMPTY_PLOT_H
        } else {
            LANE_H * lanes as i32
        };
        let plot_bottom = plot_top + plot_h;
        let list_top = plot_bottom + AXIS_H + 34;
        let height = list_top + LIST_LINE_H * list_lines as i32 + 10;
        Layout {
            tags_bottom,
            plot_top,
            plot_bottom,
            list_top,
            height,
        }
    }

    /// The band lane `k` draws its data in.
    fn band(&self, k: usize) -> std::ops::Range<i32> {
        let top = self.plot_top + LANE_H * k as i32 + LANE_HEAD_H;
        top..top + LANE_BAND_H
    }

    /// The baseline of row `row` of action labels.
    fn tag_y(&self, row: usize) -> i32 {
        self.tags_bottom - TAG_ROW_H * row as i32 - 3
    }
}

/// A line of the list below the axis: a mark's number and instant (on its first line only),
/// and its actions.
struct ListLine {
    number: Option<usize>,
    at: f64,
    text: String,
    failed: bool,
}

/// The list below the axis: each mark's number, instant and actions, wrapped.
fn list_lines(marks: &[Mark]) -> Vec<ListLine> {
    let mut lines = Vec::new();
    for (k, m) in marks.iter().enumerate() {
        let mut line = ListLine {
            number: Some(k + 1),
            at: m.at,
            text: String::new(),
            failed: m.failed,
        };
        for item in m.described() {
            if line.text.is_empty() {
                line.text = item;
            } else if chars(&line.text) + 2 + chars(&item) > LIST_CHARS {
                let next = ListLine {
                    number: None,
                    text: item,
                    ..line
                };
                lines.push(std::mem::replace(&mut line, next));
            } else {
                line.text += "; ";
                line.text += &item;
            }
        }
        lines.push(line);
    }
    lines
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Sans-serif text of `size` and `color`, anchored at its baseline's left, centre or right.
fn font(size: f64, color: RGBColor, h: HPos) -> TextStyle<'static> {
    ("sans-serif", size)
        .into_font()
        .color(&color)
        .pos(Pos::new(h, VPos::Bottom))
}

fn bold(size: f64, color: RGBColor, h: HPos) -> TextStyle<'static> {
    ("sans-serif", size)
        .into_font()
        .style(FontStyle::Bold)
        .color(&color)
        .pos(Pos::new(h, VPos::Bottom))
}

fn text(area: &Area, s: &str, (x, y): (i32, i32), style: &TextStyle) -> Drawn {
    area.draw(&Text::new(s, (x, y), style.clone()))
}

/// Lay out and draw `report`.
pub fn picture(report: &DrillReport) -> Picture {
    let lanes = lanes(report);
    let marks = marks(report);
    let axis = time_axis(&windows(&lanes, &marks, report.virtual_time_s.max(1.0)));
    let tags = place_tags(&marks, &axis);
    let rows = tags.iter().flatten().map(|t| t.row + 1).max().unwrap_or(0);
    let list = list_lines(&marks);
    let layout = Layout::new(rows, lanes.len(), list.len() + 1);
    let scene = Scene {
        report,
        layout,
        axis,
        lanes,
        marks,
        tags,
        list,
    };
    let mut svg = String::new();
    {
        let size = (WIDTH as u32, scene.layout.height as u32);
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        scene
            .draw(&root)
            .and_then(|()| root.present())
            .expect("drawing into a String does not fail");
    }
    Picture {
        svg,
        lanes: scene
            .lanes
            .iter()
            .enumerate()
            .map(|(k, l)| LanePlace {
                title: l.title.clone(),
                band: scene.layout.band(k),
            })
            .collect(),
        axis: scene.axis,
    }
}

/// Everything laid out, ready to draw.
struct Scene<'a> {
    report: &'a DrillReport,
    layout: Layout,
    axis: TimeAxis,
    lanes: Vec<Lane<'a>>,
    marks: Vec<Mark>,
    tags: Vec<Option<Tag>>,
    list: Vec<ListLine>,
}

impl Scene<'_> {
    /// Draw, back to front: the lanes' backgrounds and the axis, then the losses and delays,
    /// then the actions' lines and labels, then the lanes' headings over those lines.
    fn draw(&self, root: &Area) -> Drawn {
        let (layout, axis) = (&self.layout, &self.axis);
        root.fill(&WHITE)?;
        draw_title(self.report, root)?;
        draw_key(root)?;
        for (k, lane) in self.lanes.iter().enumerate() {
            draw_lane_band(root, axis, lane, layout.band(k))?;
        }
        draw_axis(root, layout, axis, self.lanes.is_empty())?;
        for (k, lane) in self.lanes.iter().enumerate() {
            draw_losses(root, axis, lane, layout.band(k))?;
            draw_delay(root, axis, lane, layout.band(k))?;
        }
        draw_marks(root, layout, axis, &self.marks, &self.tags)?;
        for (k, lane) in self.lanes.iter().enumerate() {
            draw_lane_head(root, lane, layout.band(k).start - LANE_HEAD_H)?;
        }
        draw_list(root, layout, &self.list)
    }
}

fn draw_title(report: &DrillReport, root: &Area) -> Drawn {
    let verdict = match (report.interrupted, report.passed) {
        (true, _) => "interrupted",
        (false, true) => "passed",
        (false, false) => "FAILED",
    };
    let title = format!(
        "drill {} on topology {} (seed {}): {verdict}",
        report.drill, report.topology, report.seed
    );
    text(
        root,
        &title,
        (PLOT_LEFT, 28),
        &bold(TITLE_FONT, BLACK, HPos::Left),
    )
}

/// What the colours and lines mean, in one row under the title.
fn draw_key(root: &Area) -> Drawn {
    let y = 50;
    let style = font(SMALL_FONT, MUTED, HPos::Left);
    let mut x = PLOT_LEFT;
    let say = |x: &mut i32, s: &str| -> Drawn {
        text(root, s, (*x + 20, y + 1), &style)?;
        *x += 20 + text_width(s, SMALL_FONT) + 18;
        Ok(())
    };
    root.draw(&Rectangle::new([(x, y - 9), (x + 14, y)], LOSS.filled()))?;
    say(&mut x, "probes lost, TCP stalled")?;
    root.draw(&PathElement::new(
        [(x, y - 2), (x + 5, y - 8), (x + 9, y - 3), (x + 14, y - 7)],
        DELAY.stroke_width(2),
    ))?;
    say(&mut x, "one-way delay (largest per bin, scaled per lane)")?;
    root.draw(&PathElement::new([(x + 7, y - 11), (x + 7, y + 2)], ACTION))?;
    say(&mut x, "action took effect")?;
    root.draw(&DashedPathElement::new(
        [(x + 7, y - 11), (x + 7, y + 2)],
        3,
        2,
        FAILED.stroke_width(2),
    ))?;
    say(&mut x, "action failed")
}

/// A lane's background over the time its probes ran.
fn draw_lane_band(root: &Area, axis: &TimeAxis, lane: &Lane, band: std::ops::Range<i32>) -> Drawn {
    for p in &axis.panels {
        let from = lane.probing.from.max(p.seconds.from);
        let to = lane.probing.to.min(p.seconds.to);
        if from < to {
            root.draw(&Rectangle::new(
                [(p.x(from), band.start), (p.x(to), band.end)],
                LANE_BACKGROUND.filled(),
            ))?;
        }
    }
    Ok(())
}

/// Each window's ticks and grid (plotters' mesh over the window), the cuts between windows,
/// and the axis's name.
fn draw_axis(root: &Area, layout: &Layout, axis: &TimeAxis, empty: bool) -> Drawn {
    let plot_h = layout.plot_bottom - layout.plot_top;
    for p in &axis.panels {
        let area = root
            .clone()
            .shrink((p.left, layout.plot_top), (p.width, plot_h + AXIS_H));
        let mut chart = ChartBuilder::on(&area)
            .x_label_area_size(AXIS_H)
            .build_cartesian_2d(p.seconds.from..p.seconds.to, 0.0..1.0)?;
        let decimals = match p.seconds.len() {
            l if l >= 10.0 => 0,
            l if l >= 1.0 => 1,
            _ => 2,
        };
        let label = |t: &f64| format!("{t:.decimals$}");
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_labels((p.width / 70).max(2) as usize)
            .x_label_formatter(&label)
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(MUTED)
            .label_style(("sans-serif", SMALL_FONT).into_font().color(&MUTED))
            .draw()?;
    }
    for pair in axis.panels.windows(2) {
        let x = pair[0].left + pair[0].width + PANEL_GAP / 2;
        for dx in [-3, 2] {
            root.draw(&PathElement::new(
                [
                    (x + dx - 3, layout.plot_bottom + 5),
                    (x + dx + 3, layout.plot_bottom - 5),
                ],
                MUTED.stroke_width(1),
            ))?;
        }
    }
    if empty {
        let note = font(TEXT_FONT, MUTED, HPos::Center);
        let y = layout.plot_top + EMPTY_PLOT_H / 2 + 5;
        text(
            root,
            "no probes in this drill",
            ((PLOT_LEFT + PLOT_RIGHT) / 2, y),
            &note,
        )?;
    }
    let cut = if axis.panels.len() > 1 {
        format!("; stretches of more than {JOIN_S:.0} s with no action and no loss cut out (//)")
    } else {
        String::new()
    };
    let name = format!("virtual time (s){cut}");
    let style = font(SMALL_FONT, MUTED, HPos::Center);
    let y = layout.plot_bottom + AXIS_H + 16;
    text(root, &name, ((PLOT_LEFT + PLOT_RIGHT) / 2, y), &style)
}

/// The lane's runs of loss, as red spans.
fn draw_losses(root: &Area, axis: &TimeAxis, lane: &Lane, band: std::ops::Range<i32>) -> Drawn {
    for span in lane.lost_spans() {
        let Some(p) = axis.panel_of(span.from) else {
            continue;
        };
        let (x0, x1) = (p.x(span.from), p.x(span.to.min(p.seconds.to)));
        root.draw(&Rectangle::new(
            [(x0, band.start), (x1.max(x0 + 1), band.end)],
            LOSS.filled(),
        ))?;
        let length = format!("{:.3} s", span.len());
        if text_width(&length, SMALL_FONT) + 8 < x1 - x0 {
            let y = (band.start + band.end) / 2 + 5;
            text(
                root,
                &length,
                ((x0 + x1) / 2, y),
                &font(SMALL_FONT, WHITE, HPos::Center),
            )?;
        }
    }
    Ok(())
}

/// The lane's one-way delay: the largest of each bin, as a line broken where a bin is empty or
/// the axis is cut.
fn draw_delay(root: &Area, axis: &TimeAxis, lane: &Lane, band: std::ops::Range<i32>) -> Drawn {
    let top = lane.max_delay_ms();
    let y = |ms: f64| {
        let share = if top > 0.0 { ms / top } else { 0.0 };
        band.end - 3 - (share * f64::from(band.end - band.start - 6)).round() as i32
    };
    let mut line: Vec<(i32, i32)> = Vec::new();
    let mut last: Option<(f64, Option<&Panel>)> = None;
    for bin in &lane.loss.delay {
        let from = bin.from.as_secs_f64();
        let mid = from + lane.bin / 2.0;
        let panel = axis.panel_of(mid);
        let joined = last.is_some_and(|(f, p)| from - f < lane.bin * 1.5 && p == panel);
        if !joined {
            draw_line(root, &line)?;
            line.clear();
        }
        if let Some(p) = panel {
            line.push((p.x(mid), y(bin.max.as_secs_f64() * 1e3)));
        }
        last = Some((from, panel));
    }
    draw_line(root, &line)
}

fn draw_line(root: &Area, line: &[(i32, i32)]) -> Drawn {
    match line {
        [] => Ok(()),
        [(x, y)] => root.draw(&Rectangle::new(
            [(*x - 1, *y - 1), (*x + 1, *y + 1)],
            DELAY.filled(),
        )),
        _ => root.draw(&PathElement::new(line.to_vec(), DELAY.stroke_width(2))),
    }
}

/// Each mark's line, from its label (or the top of the lanes) to the bottom of the lanes, and its
/// label.
fn draw_marks(
    root: &Area,
    layout: &Layout,
    axis: &TimeAxis,
    marks: &[Mark],
    tags: &[Option<Tag>],
) -> Drawn {
    for (m, tag) in marks.iter().zip(tags) {
        let x = axis.x(m.at).expect("every action is in a window");
        let top = tag
            .as_ref()
            .map_or(layout.plot_top, |t| layout.tag_y(t.row) - 9);
        let ends = [(x, top), (x, layout.plot_bottom)];
        if m.failed {
            root.draw(&DashedPathElement::new(ends, 4, 3, FAILED.stroke_width(2)))?;
        } else {
            root.draw(&PathElement::new(ends, ACTION.stroke_width(1)))?;
        }
        if let Some(t) = tag {
            let color = if m.failed { FAILED } else { ACTION };
            let (dx, anchor) = if t.leftward {
                (-3, HPos::Right)
            } else {
                (3, HPos::Left)
            };
            let style = font(SMALL_FONT, color, anchor);
            text(root, &t.text, (t.x + dx, layout.tag_y(t.row)), &style)?;
        }
    }
    Ok(())
}

/// A lane's heading: its direction and outage, its delay scale, and the expected outage.
fn draw_lane_head(root: &Area, lane: &Lane, top: i32) -> Drawn {
    if let Some(tcp) = &lane.tcp {
        let first = format!(
            "{}   longest stall {:.3} s   {} segments retransmitted",
            lane.title, tcp.stall, tcp.retransmits
        );
        let note = if tcp.survived {
            "the connection survived"
        } else {
            "the connection failed"
        };
        return draw_head_lines(
            root,
            top,
            &[(first, TEXT_FONT, BLACK), (note.into(), SMALL_FONT, MUTED)],
        );
    }
    let outage = lane.loss.outage.as_secs_f64();
    let (expected, formula) = match lane.expected {
        Some(want) => match want.seconds {
            Some(secs) => (
                format!(", expected {secs:.3} s"),
                format!("expected: {}", want.formula),
            ),
            None => (
                ", expected open".into(),
                "expected: still out when the probes end".into(),
            ),
        },
        None => (String::new(), "no outage expected in the drill file".into()),
    };
    let first = format!(
        "{}   outage {outage:.3} s{expected}   ({} of {} probes lost)",
        lane.title, lane.loss.lost, lane.loss.sent
    );
    let scale = format!("delay up to {:.3} ms", lane.max_delay_ms());
    draw_head_lines(
        root,
        top,
        &[(first, TEXT_FONT, BLACK), (formula, SMALL_FONT, MUTED)],
    )?;
    let y = top + 28;
    let w = text_width(&scale, SMALL_FONT);
    root.draw(&Rectangle::new(
        [(PLOT_RIGHT - w - 6, y - 12), (PLOT_RIGHT, y + 2)],
        WHITE.mix(0.85).filled(),
    ))?;
    text(
        root,
        &scale,
        (PLOT_RIGHT - 2, y),
        &font(SMALL_FONT, DELAY, HPos::Right),
    )
}

/// A lane head's lines of text, each on a light backing so that the lane shows through.
fn draw_head_lines(root: &Area, top: i32, lines: &[(String, f64, RGBColor)]) -> Drawn {
    for (k, (s, size, color)) in lines.iter().enumerate() {
        let y = top + 14 + 14 * k as i32;
        let w = text_width(s, *size);
        root.draw(&Rectangle::new(
            [(PLOT_LEFT, y - 12), (PLOT_LEFT + w + 6, y + 2)],
            WHITE.mix(0.85).filled(),
        ))?;
        text(
            root,
            s,
            (PLOT_LEFT + 2, y),
            &font(*size, *color, HPos::Left),
        )?;
    }
    Ok(())
}

/// The list of every mark below the axis, in columns: number, instant, actions.
fn draw_list(root: &Area, layout: &Layout, list: &[ListLine]) -> Drawn {
    let heading = if list.is_empty() {
        "no actions in this drill"
    } else {
        "actions, by the instant they took effect (or, failed, were asked for):"
    };
    let style = font(TEXT_FONT, BLACK, HPos::Left);
    text(root, heading, (PLOT_LEFT, layout.list_top), &style)?;
    let widest_time = list
        .iter()
        .map(|l| text_width(&format!("{:.3} s", l.at), SMALL_FONT))
        .max()
        .unwrap_or(0);
    let (number_x, time_x) = (PLOT_LEFT + 18, PLOT_LEFT + 30 + widest_time);
    for (k, line) in list.iter().enumerate() {
        let color = if line.failed { FAILED } else { ACTION };
        let y = layout.list_top + LIST_LINE_H * (k as i32 + 1);
        if let Some(n) = line.number {
            let right = font(SMALL_FONT, color, HPos::Right);
            text(root, &n.to_string(), (number_x, y), &right)?;
            text(root, &format!("{:.3} s", line.at), (time_x, y), &right)?;
        }
        let left = font(SMALL_FONT, color, HPos::Left);
        text(root, &line.text, (time_x + 12, y), &left)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::action::{Action, TimelineEvent};
    use crate::drill::report::Tables;
    use crate::time::Instant;

    fn event(action: Action, at_ms: u64, error: Option<&str>) -> TimelineEvent {
        let at = Instant::from_millis(at_ms);
        TimelineEvent {
            action,
            object: String::new(),
            requested_at: at,
            took_effect_at: error.is_none().then_some(at),
            error: error.map(String::from),
        }
    }

    /// A drill of actions only.
    fn report(timeline: Vec<TimelineEvent>) -> DrillReport {
        let tables = || Tables {
            network_interfaces: Vec::new(),
            route_tables: Vec::new(),
        };
        DrillReport {
            drill: "t".into(),
            topology: "lab".into(),
            seed: 1,
            passed: true,
            interrupted: false,
            planned_steps: 0,
            steps: Vec::new(),
            virtual_time_s: 30.0,
            frames_delivered: 0,
            drops: Vec::new(),
            timeline,
            unprogrammed: Vec::new(),
            failures: Vec::new(),
            before: tables(),
            after: tables(),
            timing: Vec::new(),
            timing_used: Vec::new(),
            strategies: None,
        }
    }

    /// The elements of the SVG with `attribute="value"`.
    fn with<'a>(svg: &'a str, attribute: &str, value: &str) -> Vec<&'a str> {
        let needle = format!("{attribute}=\"{value}\"");
        svg.lines().filter(|l| l.contains(&needle)).collect()
    }

    /// The end points of a polyline element.
    fn points(element: &str) -> Vec<(i32, i32)> {
        let list = element.split("points=\"").nth(1).expect("points");
        let list = &list[..list.find('"').expect("quoted")];
        list.split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').expect("x,y");
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn a_failed_action_is_a_dashed_line_of_its_own_colour() {
        let stun = || Action::StunVm {
            vm: "edge-1".into(),
        };
        let broken = Some("the reconciler is broken: nothing done");
        let svg = render(&report(vec![
            event(stun(), 1_000, None),
            event(Action::Reconcile, 2_000, broken),
        ]));
        let key = render(&report(vec![event(stun(), 1_000, None)]));
        let key = with(&key, "stroke", FAILED_STROKE);
        assert!(!key.is_empty(), "the key shows a failed action's line");
        // One solid line for the action that took effect, beside the key's.
        let solid = with(&svg, "stroke", ACTION_STROKE);
        assert_eq!(solid.len(), 2, "{solid:?}");
        // Dashes of one vertical line for the failed one, beside the key's.
        let dashes: Vec<Vec<(i32, i32)>> = with(&svg, "stroke", FAILED_STROKE)
            .into_iter()
            .filter(|l| !key.contains(l))
            .map(points)
            .collect();
        assert!(dashes.len() >= 3, "{dashes:?}");
        let x = dashes[0][0].0;
        assert!(dashes.iter().flatten().all(|p| p.0 == x), "{dashes:?}");
        let solid_x = points(solid[1])[0].0;
        assert!(x > solid_x, "the failed action came later");
        assert!(svg.contains("2 ✗ reconcile"));
        assert!(svg.contains("✗ reconcile failed: the reconciler is broken: nothing done"));
        assert!(svg.contains("1 stun edge-1"));
    }

    #[test]
    fn actions_at_one_instant_share_a_line_and_a_label() {
        let svg = render(&report(vec![
            event(
                Action::StunVm {
                    vm: "edge-1".into(),
                },
                1_000,
                None,
            ),
            event(
                Action::ResumeVm {
                    vm: "edge-1".into(),
                    host: "esxi-3".into(),
                },
                1_000,
                None,
            ),
        ]));
        assert_eq!(
            with(&svg, "stroke", ACTION_STROKE).len(),
            2,
            "key and one line"
        );
        assert!(svg.contains("1 stun edge-1; resume edge-1 on esxi-3"));
    }

    #[test]
    fn long_quiet_stretches_are_cut_out_of_the_axis() {
        let at = |ms| event(Action::Reconcile, ms, None);
        let r = report(vec![at(1_000), at(1_801_000), at(1_816_000)]);
        let marks = marks(&r);
        let windows = windows(&[], &marks, r.virtual_time_s);
        assert_eq!(windows.len(), 2, "{windows:?}");
        assert!(windows[0].contains(1.0) && windows[1].contains(1801.0));
        assert!(windows[1].contains(1816.0));
        assert!(windows[0].to + JOIN_S < windows[1].from);
        let axis = time_axis(&windows);
        let [a, b] = [&axis.panels[0], &axis.panels[1]];
        assert!(a.left + a.width < b.left, "a gap between the windows");
        assert_eq!(b.left + b.width, PLOT_RIGHT);
        // The lone action's window is narrow, but not nothing.
        let whole = f64::from(PLOT_RIGHT - PLOT_LEFT);
        assert!(f64::from(a.width) >= MIN_PANEL_SHARE * whole * 0.9, "{a:?}");
        assert!(a.width < b.width);
    }

    #[test]
    fn labels_never_overlap_in_a_row_nor_cross_a_line() {
        // Twenty actions 100 ms apart: too many to label in full.
        let timeline = (0..20)
            .map(|k| {
                let vm = format!("vm-{k}");
                event(Action::StunVm { vm }, 1_000 + 100 * k, None)
            })
            .collect();
        let r = report(timeline);
        let marks = marks(&r);
        let axis = time_axis(&windows(&[], &marks, r.virtual_time_s));
        let tags = place_tags(&marks, &axis);
        let placed: Vec<&Tag> = tags.iter().flatten().collect();
        assert!(placed.len() < marks.len(), "some are left unlabelled");
        for (i, a) in placed.iter().enumerate() {
            for b in &placed[i + 1..] {
                assert!(fits((a.row, a.x, a.covers), b), "{} / {}", a.text, b.text);
            }
        }
    }
}
