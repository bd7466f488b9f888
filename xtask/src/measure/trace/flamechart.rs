//! A trace as folded stacks in time order (flamegraph.pl's input) and the
//! flamechart SVG inferno draws from them.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::guest_output::tslog::Trace;

/// The root frame of every folded stack: entry → ready.
const ROOT: &str = "boot";

/// Folded stacks in time order (`boot;a;b <cycles>`), one line per stretch
/// of self time: flamegraph.pl's input, and a flamechart when not merged.
/// The boot CPU (and the stub) is the `boot` lane; each application
/// processor follows as a lane of its own, `cpu<n>`, over the same window
/// (its time outside its spans is the lane's self time).
pub(crate) fn folded_stacks(trace: &Trace) -> Vec<String> {
    let mut lanes: BTreeMap<Option<u64>, Vec<usize>> = BTreeMap::new();
    for &root in &trace.roots {
        let lane = trace.spans[root].application_processor();
        lanes.entry(lane).or_default().push(root);
    }
    lanes.entry(None).or_default();
    let mut lines = Vec::new();
    for (lane, roots) in lanes {
        let name = lane.map_or_else(|| ROOT.to_owned(), |cpu| format!("cpu{cpu}"));
        fold_lane(trace, &name, &roots, &mut lines);
    }
    lines
}

/// One lane: its roots' stacks under `name`, and the time between them.
fn fold_lane(trace: &Trace, name: &str, roots: &[usize], lines: &mut Vec<String>) {
    let mut cursor = trace.start;
    for &root in roots {
        let (start, end) = trace.clipped(&trace.spans[root]);
        if start >= end {
            continue;
        }
        push_folded(lines, name, start.saturating_sub(cursor));
        fold_span(trace, root, name, lines);
        cursor = cursor.max(end);
    }
    push_folded(lines, name, trace.end.saturating_sub(cursor));
}

fn fold_span(trace: &Trace, index: usize, parent_path: &str, lines: &mut Vec<String>) {
    let span = &trace.spans[index];
    let path = format!("{parent_path};{}", span.name);
    let (start, end) = trace.clipped(span);
    let mut cursor = start;
    for &child in &span.children {
        let (child_start, child_end) = trace.clipped(&trace.spans[child]);
        if child_start >= child_end {
            continue;
        }
        push_folded(lines, &path, child_start.saturating_sub(cursor));
        fold_span(trace, child, &path, lines);
        cursor = cursor.max(child_end);
    }
    push_folded(lines, &path, end.saturating_sub(cursor));
}

fn push_folded(lines: &mut Vec<String>, path: &str, cycles: u64) {
    if cycles > 0 {
        lines.push(format!("{path} {cycles}"));
    }
}

/// Renders time-ordered folded lines as a flamechart SVG (not merged, time
/// running left to right). inferno's flame-chart mode reverses its input,
/// expecting newest first as `perf script` prints, so it gets them reversed.
pub(crate) fn flamechart_svg(folded: &[String], title: &str) -> Result<Vec<u8>> {
    let mut options = inferno::flamegraph::Options::default();
    options.flame_chart = true;
    options.title = title.to_owned();
    options.count_name = "cycles".to_owned();
    options.min_width = 0.0;
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(
        &mut options,
        folded.iter().rev().map(String::as_str),
        &mut svg,
    )?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_output::tslog::{TCG_DUMP, framed_dump, parse_dump};

    #[test]
    fn folded_self_times_add_up_to_the_whole_boot() {
        let trace = Trace::build(&parse_dump(TCG_DUMP).unwrap().records);
        let folded_total: u64 = folded_stacks(&trace)
            .iter()
            .map(|line| line.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        assert_eq!(folded_total, trace.total());
    }

    #[test]
    fn nested_spans_fold_into_self_time() {
        let text = framed_dump(
            "0x0 0 ENTER a\n0x0 10 ENTER b\n0x0 30 EXIT b\n0x0 40 EXIT a\n0x0 45 ENTER c\n0x0 50 EXIT c\n0x0 60 EVENT ready\n",
        );
        let trace = Trace::build(&parse_dump(&text).unwrap().records);
        assert_eq!(
            folded_stacks(&trace),
            [
                "boot;a 10",
                "boot;a;b 20",
                "boot;a 10",
                "boot 5",
                "boot;c 5",
                "boot 10"
            ]
        );
    }

    #[test]
    fn each_application_processor_is_a_lane_of_its_own() {
        let text = framed_dump(
            "0x1000 0 ENTER smp_init\n0x1001 10 ENTER ap_startup\n0x1001 20 EXIT ap_startup\n\
             0x1000 30 EXIT smp_init\n0x1000 40 EVENT ready\n",
        );
        let trace = Trace::build(&parse_dump(&text).unwrap().records);
        assert_eq!(
            folded_stacks(&trace),
            [
                "boot;smp_init 30",
                "boot 10",
                "cpu1 10",
                "cpu1;ap_startup 10",
                "cpu1 20"
            ]
        );
    }

    /// The x coordinate of the frame whose tooltip starts with `name`.
    fn frame_x(svg: &str, name: &str) -> f64 {
        let at = svg
            .find(&format!("<title>{name} ("))
            .expect("frame present");
        let rest = &svg[at..];
        let x = rest.find(" x=\"").expect("rect after title") + 4;
        let value = &rest[x..];
        value[..value.find('"').unwrap()]
            .trim_end_matches('%')
            .parse()
            .unwrap()
    }

    #[test]
    fn flamechart_runs_left_to_right() {
        let folded = [
            "boot;first 10".into(),
            "boot 5".into(),
            "boot;second 10".into(),
        ];
        let svg = String::from_utf8(flamechart_svg(&folded, "t").unwrap()).unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(
            frame_x(&svg, "first") < frame_x(&svg, "second"),
            "time flows left to right"
        );
    }
}
