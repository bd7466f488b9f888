//! docs/boot-report.md documents every report line shape, and nothing else:
//! each shape's `mote: <grammar>` appears verbatim in one of its code
//! blocks, and every `mote: ` line of those blocks is a shape.

use mote_boot::protocol::report::{PREFIX, SHAPES};

const PAGE: &str = include_str!("../../docs/boot-report.md");

/// The `mote: ` lines inside the page's fenced code blocks.
fn documented_lines() -> Vec<&'static str> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in PAGE.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
        } else if inside && line.starts_with(PREFIX) {
            lines.push(line);
        }
    }
    lines
}

fn shape_lines() -> Vec<String> {
    SHAPES
        .iter()
        .map(|shape| format!("{PREFIX}{}", shape.grammar))
        .collect()
}

#[test]
fn every_shape_is_documented() {
    let documented = documented_lines();
    let missing: Vec<String> = shape_lines()
        .into_iter()
        .filter(|line| !documented.contains(&line.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/boot-report.md lacks these report lines (add each, verbatim, to a code block \
         with its meaning):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_documented_line_is_a_shape() {
    let shapes = shape_lines();
    let unknown: Vec<&str> = documented_lines()
        .into_iter()
        .filter(|line| !shapes.iter().any(|shape| shape == line))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/boot-report.md documents lines no shape in boot/src/protocol/report has (a typo, \
         or a line the kernel no longer prints):\n{}",
        unknown.join("\n")
    );
}
