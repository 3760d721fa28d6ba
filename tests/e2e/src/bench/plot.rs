//! `sync.png`: the propagation latency distribution of every engine as a cumulative curve
//! (share of changes arrived within a latency), latency on a log scale.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

use super::run::Outcome;

const COLOURS: [RGBColor; 5] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
];

/// Draws the curves of `outcomes` into `path`.
pub fn latencies(path: &Path, outcomes: &[Outcome]) -> Result<()> {
    register_font()?;
    let max = outcomes
        .iter()
        .flat_map(|o| o.latencies_ms.iter().copied())
        .fold(10.0, f64::max);
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Propagation latency under churn (share of changes on every copy within x)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((1.0..max * 1.2).log_scale(), 0.0..100.0)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("% of changes")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, outcome) in outcomes.iter().enumerate() {
        let mut sorted = outcome.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len().max(1) as f64;
        let colour = COLOURS[i % COLOURS.len()];
        let points = sorted
            .iter()
            .enumerate()
            .map(|(k, ms)| (ms.max(1.0), (k + 1) as f64 * 100.0 / n));
        let summary = super::run::summary(&outcome.latencies_ms);
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(format!(
                "{} (p50 {:.0} ms, p99 {:.0} ms)",
                outcome.engine, summary.p50_ms, summary.p99_ms
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// plotters draws text with a font it is given (no system font lookup compiled in): the
/// machine's sans-serif font, as fontconfig names it.
fn register_font() -> Result<()> {
    let out = Command::new("fc-match")
        .args(["--format=%{file}", "sans-serif"])
        .output()
        .context("running fc-match to find a font for the plot (install fontconfig)")?;
    let file = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let bytes = std::fs::read(&file)
        .with_context(|| format!("reading font {file:?} (install a sans-serif font)"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(bytes.into_boxed_slice()),
    )
    .map_err(|_| anyhow!("{file} is not a font plotters can use"))?;
    Ok(())
}
