//! The drill as one SVG picture: the shipped drills draw into well-formed SVG that shows each
//! probe direction's losses to scale and every action, and docs/edge-vmotion.svg (shown in the
//! README) is what the Edge vMotion drill draws today.

mod common;
use common::{default_topo, root};

use std::collections::{BTreeMap, BTreeSet};

use vmcnet::drill::svg::{self, Picture, LOSS_FILL};
use vmcnet::drill::{run_drill, DrillFile, DrillReport, RunOptions};

/// Set to 1 to rewrite docs/edge-vmotion.svg from the drill instead of comparing with it.
const BLESS: &str = "VMCNET_BLESS";

fn run(name: &str, topo: &str) -> DrillReport {
    let d = DrillFile::load(&root().join(format!("scripts/drills/{name}.toml"))).unwrap();
    let topo = vmcnet_topo::load(&root().join(topo)).unwrap();
    run_drill(&topo, &d, &RunOptions::default()).unwrap()
}

/// Text as it appears inside the SVG.
fn escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The attributes of every element named `name`, in document order.
fn elements(svg: &str, name: &str) -> Vec<BTreeMap<String, String>> {
    let open = format!("<{name} ");
    svg.match_indices(&open)
        .map(|(at, _)| {
            let rest = &svg[at + open.len()..];
            let tag = &rest[..rest.find('>').expect("a closed tag")];
            tag.split('"')
                .collect::<Vec<_>>()
                .chunks(2)
                .filter(|kv| kv.len() == 2)
                .map(|kv| {
                    let key = kv[0].trim().trim_end_matches('=').to_string();
                    (key, kv[1].to_string())
                })
                .collect()
        })
        .collect()
}

fn int(attrs: &BTreeMap<String, String>, key: &str) -> i32 {
    attrs[key]
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {attrs:?}"))
}

/// Every start tag closed, in order, and one root `svg` element; the text between tags has no
/// bare `<` or `&` that is not an entity.
fn assert_well_formed(svg: &str) {
    let mut open: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        for (at, _) in text.match_indices('&') {
            let entity = &text[at..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "a bare & in {text:?}"
            );
        }
        let end = start + rest[start..].find('>').expect("every tag ends");
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "a tag inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name.trim()), "closing {name}");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().expect("a tag name");
            if open.is_empty() {
                roots += 1;
            }
            open.push(name);
        } else if open.is_empty() {
            roots += 1;
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "left open: {open:?}");
    assert_eq!(roots, 1, "one root element");
    assert!(svg.trim_start().starts_with("<svg "), "the root is svg");
}

/// xmllint, where the machine has it, agrees that the SVG is well-formed XML.
fn xmllint_agrees(svg: &str, name: &str) {
    let Ok(probe) = std::process::Command::new("xmllint")
        .arg("--version")
        .output()
    else {
        return;
    };
    if !probe.status.success() {
        return;
    }
    let path = std::env::temp_dir().join(format!("vmcnet-svg-test-{name}.svg"));
    std::fs::write(&path, svg).unwrap();
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "xmllint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The filled red spans drawn in `band`: (left, width) in pixels.
fn loss_spans(svg: &str, band: &std::ops::Range<i32>) -> Vec<(i32, i32)> {
    elements(svg, "rect")
        .iter()
        .filter(|r| r["fill"] == LOSS_FILL)
        .filter(|r| int(r, "y") == band.start && int(r, "height") == band.end - band.start)
        .map(|r| (int(r, "x"), int(r, "width")))
        .collect()
}

#[test]
fn edge_vmotion_draws_each_direction_with_its_outage_to_scale() {
    let r = run("edge-vmotion", "topo/default.toml");
    let Picture { svg, axis, lanes } = svg::picture(&r);
    assert_well_formed(&svg);
    xmllint_agrees(&svg, "edge-vmotion");
    let probe = r.steps[0].probe.as_ref().expect("a probe item");
    let directions = 2 * r.steps.iter().filter(|s| s.probe.is_some()).count();
    let stalls: Vec<_> = r
        .steps
        .iter()
        .filter_map(|s| match &s.app {
            vmcnet::node::endpoint::AppReport::TcpSend(t) if !t.longest_stall.is_zero() => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(stalls.len(), 1, "the TCP stream stalls across the move");
    assert_eq!(
        lanes.len(),
        directions + stalls.len(),
        "a lane per probe direction, and one per TCP item that stalled"
    );
    // The TCP lane: its longest stall, to scale.
    let tcp = &lanes[directions];
    assert_eq!(tcp.title, "web-1 → ec2-1 TCP");
    let spans = loss_spans(&svg, &tcp.band);
    assert_eq!(spans.len(), 1, "{spans:?}");
    let from = stalls[0].longest_stall_from.unwrap().as_secs_f64();
    let panel = axis.panel_of(from).expect("the stall is drawn");
    let want = stalls[0].longest_stall.as_secs_f64() * panel.pixels_per_second();
    assert!(
        (f64::from(spans[0].1) - want).abs() <= 1.5,
        "{spans:?}, {want:.1} px"
    );
    assert!(svg.contains(&format!(
        "longest stall {:.3} s",
        stalls[0].longest_stall.as_secs_f64()
    )));
    let titles = ["web-1 → ec2-1 (SDDC → VPC)", "ec2-1 → web-1 (VPC → SDDC)"];
    for (lane, title) in lanes.iter().zip(titles) {
        assert_eq!(lane.title, title);
        assert_eq!(svg.matches(title).count(), 1, "{title}");
    }
    for (lane, loss) in lanes.iter().zip([&probe.there, &probe.back]) {
        let spans = loss_spans(&svg, &lane.band);
        assert_eq!(spans.len(), loss.lost_runs.len(), "{}", lane.title);
        // The widest span is the outage: the longest run of lost probes, times the interval.
        let (left, width) = *spans.iter().max_by_key(|s| s.1).expect("a loss");
        let first = loss.first_lost_sent.expect("a loss").as_secs_f64();
        let panel = axis.panel_of(first).expect("the loss is drawn");
        let want = loss.outage.as_secs_f64() * panel.pixels_per_second();
        assert!(
            (f64::from(width) - want).abs() <= 1.5,
            "{}: {width} px for an outage of {:?}, {want:.1} px at this scale",
            lane.title,
            loss.outage
        );
        assert!(panel.left <= left && left + width <= panel.left + panel.width);
        // Its outage and the expected one head the lane.
        assert!(svg.contains(&format!("outage {:.3} s", loss.outage.as_secs_f64())));
    }
    for want in probe.expected.iter().flatten() {
        let secs = want.seconds.expect("a formula");
        assert!(svg.contains(&format!("expected {secs:.3} s")), "{secs}");
        assert!(svg.contains(&escaped(&want.formula)), "{}", want.formula);
    }
}

#[test]
fn every_action_that_took_effect_is_drawn_and_named() {
    let r = run("edge-vmotion", "topo/default.toml");
    let picture = svg::picture(&r);
    let instants: BTreeSet<_> = r.timeline.iter().filter_map(|e| e.took_effect_at).collect();
    let markers = elements(&picture.svg, "polyline")
        .into_iter()
        .filter(|l| l["stroke"] == svg::ACTION_STROKE)
        .count();
    // One line per instant, and one in the key above the lanes.
    assert_eq!(markers, instants.len() + 1);
    for e in &r.timeline {
        assert!(e.took_effect_at.is_some(), "{e:?}");
        let name = escaped(&e.action.to_string());
        assert!(picture.svg.contains(&name), "{name} is not in the picture");
    }
}

#[test]
fn a_long_drill_is_cut_to_windows_that_hold_every_loss_and_action() {
    let r = run("maintenance-rolling", "topo/default.toml");
    let Picture { svg, axis, lanes } = svg::picture(&r);
    assert_well_formed(&svg);
    let probe = r.steps[0].probe.as_ref().unwrap();
    let losses: Vec<f64> = [&probe.there, &probe.back]
        .iter()
        .flat_map(|l| l.lost_runs.iter().map(|run| run.first_sent.as_secs_f64()))
        .collect();
    let span = r.steps[0].duration_s;
    assert!(axis.panels.len() > 1, "{axis:?}");
    for p in &axis.panels {
        assert!(p.seconds.to - p.seconds.from < span / 10.0, "{p:?}");
    }
    for t in r
        .timeline
        .iter()
        .filter_map(|e| e.took_effect_at)
        .map(|t| t.as_secs_f64())
        .chain(losses)
    {
        assert!(axis.panel_of(t).is_some(), "{t} s is cut out: {axis:?}");
    }
    // The outage back is drawn to the scale of its own window.
    let back = loss_spans(&svg, &lanes[1].band);
    let widest = back.iter().map(|s| s.1).max().unwrap();
    let first = probe.back.lost_runs.iter().max_by_key(|r| r.count).unwrap();
    let panel = axis.panel_of(first.first_sent.as_secs_f64()).unwrap();
    let want = probe.back.outage.as_secs_f64() * panel.pixels_per_second();
    assert!(
        (f64::from(widest) - want).abs() <= 1.5,
        "{widest} vs {want}"
    );
}

#[test]
fn every_shipped_drill_draws_well_formed_svg() {
    // Every drill file shipped, on the topology its header names.
    let mut drills: Vec<(String, &str)> = std::fs::read_dir(root().join("scripts/drills"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let topo = match name.as_str() {
                "segment-churn" => "topo/examples/small-quota.toml",
                "two-clusters" => "topo/examples/two-clusters.toml",
                "custom-route-table" => "topo/examples/custom-route-table.toml",
                _ => "topo/default.toml",
            };
            (name, topo)
        })
        .collect();
    drills.sort();
    assert!(drills.len() >= 11, "{drills:?}");
    for (name, topo) in &drills {
        let (name, topo) = (name.as_str(), *topo);
        let r = run(name, topo);
        assert!(r.passed, "every shipped drill passes on its topology: {r}");
        let svg = svg::render(&r);
        assert_well_formed(&svg);
        xmllint_agrees(&svg, name);
        assert!(svg.contains(&escaped(&r.drill)), "{name}: titled");
        for e in &r.timeline {
            let name = escaped(&e.action.to_string());
            assert!(svg.contains(&name), "{name} is not in the picture");
        }
    }
}

#[test]
fn docs_edge_vmotion_svg_is_what_the_drill_draws() {
    let path = root().join("docs/edge-vmotion.svg");
    let r = run_drill(
        &default_topo(),
        &DrillFile::load(&root().join("scripts/drills/edge-vmotion.toml")).unwrap(),
        &RunOptions::default(),
    )
    .unwrap();
    let drawn = svg::render(&r);
    if std::env::var(BLESS).is_ok_and(|v| v == "1") {
        std::fs::write(&path, &drawn).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == drawn,
        "{} differs from what the edge-vmotion drill draws on topo/default.toml; if the change \
         is meant, rewrite it with `{BLESS}=1 cargo test -p vmcnet --test svg`, look at it, and \
         commit it",
        path.display()
    );
}
