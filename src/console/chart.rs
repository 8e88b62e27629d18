//! The burn chart: one bar per day as an inline SVG drawn on the server, so the page
//! needs no chart library and no script. Bars scale to the tallest day; each carries
//! its figure as a tooltip (`<title>`), and the page repeats the figures in a table.

use chrono::NaiveDate;
use maud::{html, Markup};

/// The drawing's coordinate space; the SVG scales to its container's width.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
// Room for the scale's labels at the size a phone needs (the style sheet makes them
// larger in these units when the drawing is narrow).
const LEFT: f64 = 100.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 36.0;
const PLOT_WIDTH: f64 = WIDTH - LEFT - RIGHT;
const PLOT_HEIGHT: f64 = HEIGHT - TOP - BOTTOM;
const BASELINE: f64 = TOP + PLOT_HEIGHT;

/// One day's figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub day: NaiveDate,
    /// What the bar's height shows (negative or not finite counts as 0).
    pub value: f64,
    /// The figure as people read it, for the tooltip (`120 条`, `¥5.40`).
    pub text: String,
}

/// Where a bar is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// The bars' rectangles: equal slots across the plot, heights in proportion to the
/// tallest value, which fills the plot's height. All zero gives bars of height 0.
pub fn layout(values: &[f64]) -> Vec<Geometry> {
    let clean = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let max = values.iter().copied().map(clean).fold(0.0, f64::max);
    let slot = PLOT_WIDTH / values.len().max(1) as f64;
    values
        .iter()
        .enumerate()
        .map(|(i, &value)| {
            let height = if max > 0.0 {
                clean(value) / max * PLOT_HEIGHT
            } else {
                0.0
            };
            Geometry {
                x: LEFT + i as f64 * slot + slot * 0.15,
                y: BASELINE - height,
                width: slot * 0.7,
                height,
            }
        })
        .collect()
}

/// The chart of `bars` (oldest first). `class` colours the bars (`bar-units`,
/// `bar-cost`); `axis` writes the scale's top value (`1200 条`); `label` names the chart
/// for screen readers.
pub fn bar_chart(bars: &[Bar], class: &str, axis: impl Fn(f64) -> String, label: &str) -> Markup {
    let values: Vec<f64> = bars.iter().map(|b| b.value).collect();
    let max = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let geometry = layout(&values);
    // About four date labels whatever the number of days (a phone has room for no more),
    // and always the last day.
    let every = bars.len().div_ceil(4).max(1);
    let view_box = format!("0 0 {WIDTH} {HEIGHT}");
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox=(view_box) role="img" aria-label=(label) {
            line x1=(LEFT) y1=(TOP) x2=(WIDTH - RIGHT) y2=(TOP) {}
            line x1=(LEFT) y1=(TOP + PLOT_HEIGHT / 2.0) x2=(WIDTH - RIGHT) y2=(TOP + PLOT_HEIGHT / 2.0) {}
            line x1=(LEFT) y1=(BASELINE) x2=(WIDTH - RIGHT) y2=(BASELINE) {}
            @if max > 0.0 {
                text x=(LEFT - 6.0) y=(TOP + 4.0) text-anchor="end" { (axis(max)) }
                text x=(LEFT - 6.0) y=(TOP + PLOT_HEIGHT / 2.0 + 4.0) text-anchor="end" { (axis(max / 2.0)) }
            }
            text x=(LEFT - 6.0) y=(BASELINE + 4.0) text-anchor="end" { "0" }
            @if max <= 0.0 {
                text.empty x=(LEFT + PLOT_WIDTH / 2.0) y=(TOP + PLOT_HEIGHT / 2.0) text-anchor="middle" {
                    "暂无用量 No usage in these days"
                }
            } @else {
                @for (bar, at) in bars.iter().zip(&geometry) {
                    @if at.height > 0.0 {
                        rect class=(class) x=(fmt(at.x)) y=(fmt(at.y)) width=(fmt(at.width)) height=(fmt(at.height)) {
                            title { (bar.day.format("%Y-%m-%d")) " " (bar.text) }
                        }
                    }
                }
            }
            @for (i, (bar, at)) in bars.iter().zip(&geometry).enumerate() {
                // A regular label too close to the last one gives way to it.
                @if (i % every == 0 && i + every < bars.len()) || i + 1 == bars.len() {
                    // The first and last labels keep inside the drawing.
                    @let (x, anchor) = if i == 0 && bars.len() > 1 {
                        (at.x, "start")
                    } else if i + 1 == bars.len() && bars.len() > 1 {
                        (at.x + at.width, "end")
                    } else {
                        (at.x + at.width / 2.0, "middle")
                    };
                    text x=(fmt(x)) y=(HEIGHT - 10.0) text-anchor=(anchor) {
                        (bar.day.format("%m-%d"))
                    }
                }
            }
        }
    }
}

/// One decimal is finer than a pixel at any width a phone or a screen shows.
fn fmt(value: f64) -> String {
    format!("{value:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, n).unwrap()
    }

    fn bars(values: &[f64]) -> Vec<Bar> {
        values
            .iter()
            .enumerate()
            .map(|(i, &value)| Bar {
                day: day(i as u32 + 1),
                value,
                text: format!("{value} 条"),
            })
            .collect()
    }

    #[test]
    fn bars_scale_to_the_tallest_day_and_stand_on_one_baseline() {
        let at = layout(&[10.0, 5.0, 0.0, 2.5]);
        let heights: Vec<f64> = at.iter().map(|g| g.height).collect();
        assert_eq!(
            heights,
            [PLOT_HEIGHT, PLOT_HEIGHT / 2.0, 0.0, PLOT_HEIGHT / 4.0]
        );
        assert!(at.iter().all(|g| (g.y + g.height - BASELINE).abs() < 1e-9));
        assert!(at.windows(2).all(|w| w[1].x > w[0].x + w[0].width));
        assert!(at
            .iter()
            .all(|g| g.x >= LEFT && g.x + g.width <= WIDTH - RIGHT));
        // Doubling every value changes nothing: the scale is relative.
        assert_eq!(layout(&[20.0, 10.0, 0.0, 5.0]), at);
    }

    #[test]
    fn the_chart_draws_one_bar_per_day_with_usage() {
        let svg = bar_chart(
            &bars(&[3.0, 0.0, 6.0]),
            "bar-units",
            |v| format!("{v} 条"),
            "units",
        )
        .into_string();
        assert_eq!(svg.matches("<rect class=\"bar-units\"").count(), 2, "{svg}");
        assert!(
            svg.contains(&format!("height=\"{PLOT_HEIGHT:.1}\"")),
            "{svg}"
        );
        assert!(
            svg.contains("2026-11-03 6 条"),
            "the tooltip names the day and its figure"
        );
        assert!(
            svg.contains(">6 条<"),
            "the scale's top is the tallest day: {svg}"
        );
    }

    #[test]
    fn an_empty_chart_says_so_and_draws_no_bars() {
        for svg in [
            bar_chart(&[], "bar-units", |v| v.to_string(), "units").into_string(),
            bar_chart(&bars(&[0.0; 30]), "bar-units", |v| v.to_string(), "units").into_string(),
            bar_chart(
                &bars(&[f64::NAN, -1.0]),
                "bar-units",
                |v| v.to_string(),
                "units",
            )
            .into_string(),
        ] {
            assert!(svg.contains("暂无用量"), "{svg}");
            assert!(!svg.contains("<rect"), "{svg}");
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }
}
