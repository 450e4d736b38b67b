//! A small SVG writer for the report's line charts: axes with round ticks, a polyline per run, a log
//! scale, and the one escaping function every text of the report goes through.

use std::fmt::Write as _;

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#17becf",
];

pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Horizontal bars, one per row, each split into `parts` (named by `legend`, coloured in order) as
/// shares of the row's total, labelled with the row's name and total. Empty without a row.
pub fn stacked_bars(rows: &[(String, Vec<f64>)], legend: &[&str]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let (left, width, bar, gap) = (180.0, 420.0, 18.0, 8.0);
    let height = 28.0 + rows.len() as f64 * (bar + gap);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {height}\" role=\"img\">",
        left + width + 90.0
    );
    let mut x = 8.0;
    for (i, name) in legend.iter().enumerate() {
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"13\" font-size=\"10\">{}</text>",
            colour(i),
            x + 13.0,
            escape(name)
        );
        x += 22.0 + 5.6 * name.chars().count() as f64;
    }
    for (r, (label, parts)) in rows.iter().enumerate() {
        let y = 24.0 + r as f64 * (bar + gap);
        let total: f64 = parts.iter().filter(|v| v.is_finite() && **v > 0.0).sum();
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + 13.0,
            escape(label)
        );
        let mut x = left;
        for (i, value) in parts.iter().enumerate() {
            if total <= 0.0 || !value.is_finite() || *value <= 0.0 {
                continue;
            }
            let w = width * value / total;
            let _ = write!(
                svg,
                "<rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{bar}\" fill=\"{}\"><title>{}: {:.3} s ({:.1}%)</title></rect>",
                colour(i),
                escape(legend.get(i).copied().unwrap_or("")),
                value,
                100.0 * value / total
            );
            x += w;
        }
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{total:.2} s</text>",
            left + width + 6.0,
            y + 13.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// About five round ticks from `lo` to `hi`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= 6.0)
        .unwrap_or(magnitude * 10.0);
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|k| first + k as f64 * step)
        .take_while(|t| *t <= hi + step * 1e-9)
        .take(12)
        .collect()
}

/// About five ticks from `lo` to `hi` at whole numbers only, for the x axis: an index is an epoch or
/// a step, so a tick between two of them (epoch 1.5) names nothing. The step is 1, 2 or 5 times a
/// power of ten, and at least 1.
fn index_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).abs();
    if !span.is_finite() {
        return Vec::new();
    }
    let mut magnitude = 1.0_f64;
    let step = loop {
        if let Some(step) = [1.0, 2.0, 5.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|s| span / s <= 6.0)
        {
            break step;
        }
        magnitude *= 10.0;
    };
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|k| first + k as f64 * step)
        .take_while(|t| *t <= hi + 1e-9)
        .take(12)
        .collect()
}

fn tick_label(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{x:.0e}")
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// One run's line: its position (for its colour), its name, and `(index, value)` points.
pub type Series<'a> = (usize, &'a str, Vec<(f64, f64)>);

/// How a chart draws its x axis and its series.
#[derive(Debug, Clone, Copy)]
pub struct Axes<'a> {
    /// The x axis's label.
    pub x_label: &'a str,
    /// A log scale on x.
    pub log_x: bool,
    /// Dots at every point (a scatter when the series have one point each), besides the lines.
    pub dots: bool,
    /// Ticks at whole numbers only (an index, an epoch).
    pub whole_x: bool,
}

/// One line chart: a polyline per run over the index, axes with ticks, log scale when `log`.
pub fn chart(title: &str, series: &[Series<'_>], log: bool) -> String {
    chart_with(
        title,
        series,
        log,
        Axes {
            x_label: "index",
            log_x: false,
            dots: false,
            whole_x: true,
        },
    )
}

/// A chart of `series` drawn as `axes` says, log scale on y when `log`.
pub fn chart_with(title: &str, series: &[Series<'_>], log: bool, axes: Axes<'_>) -> String {
    const W: f64 = 640.0;
    const H: f64 = 300.0;
    const LEFT: f64 = 64.0;
    const RIGHT: f64 = 16.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 36.0;
    let y_of = |v: f64| if log { v.log10() } else { v };
    let x_of = |x: f64| if axes.log_x { x.log10() } else { x };
    let shown = |&&(x, v): &&(f64, f64)| v.is_finite() && (!log || v > 0.0) && (!axes.log_x || x > 0.0);
    let points = series.iter().flat_map(|(_, _, s)| s.iter()).filter(shown);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, v) in points {
        let (x, y) = (x_of(x), y_of(v));
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return String::new();
    }
    if x1 - x0 < 1e-12 {
        (x0, x1) = (x0 - 1.0, x1 + 1.0);
    }
    if y1 - y0 < 1e-12 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| TOP + (y1 - y) / (y1 - y0) * (H - TOP - BOTTOM);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" \
         aria-label=\"{}\">",
        escape(title)
    );
    let _ = write!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" class=\"frame\"/>",
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    );
    let x_ticks = if axes.log_x {
        (x0.floor() as i32..=x1.ceil() as i32)
            .map(f64::from)
            .filter(|t| *t >= x0 - 1e-9 && *t <= x1 + 1e-9)
            .collect::<Vec<_>>()
    } else if axes.whole_x {
        index_ticks(x0, x1)
    } else {
        ticks(x0, x1)
    };
    for t in x_ticks {
        let x = px(t);
        let label = if axes.log_x {
            tick_label(10f64.powf(t))
        } else {
            tick_label(t)
        };
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" class=\"tick\"/><text x=\"{x:.1}\" y=\"{:.1}\" \
             class=\"xt\">{}</text>",
            H - BOTTOM,
            H - BOTTOM + 4.0,
            H - BOTTOM + 16.0,
            label
        );
    }
    let y_ticks = if log {
        (y0.floor() as i32..=y1.ceil() as i32)
            .map(f64::from)
            .filter(|t| *t >= y0 - 1e-9 && *t <= y1 + 1e-9)
            .collect::<Vec<_>>()
    } else {
        ticks(y0, y1)
    };
    for t in y_ticks {
        let y = py(t);
        let label = if log {
            tick_label(10f64.powf(t))
        } else {
            tick_label(t)
        };
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{:.1}\" y=\"{:.1}\" \
             class=\"yt\">{label}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\">{}</text>",
        (LEFT + W - RIGHT) / 2.0,
        H - 4.0,
        escape(axes.x_label)
    );
    for (i, name, line) in series {
        let at: Vec<(f64, f64)> = line
            .iter()
            .filter(shown)
            .map(|&(x, v)| (px(x_of(x)), py(y_of(v))))
            .collect();
        if axes.dots {
            for (x, y) in &at {
                let _ = write!(
                    svg,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{}\"><title>{}</title></circle>",
                    colour(*i),
                    escape(name)
                );
            }
        }
        let points: Vec<String> = at.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        if points.len() < 2 && axes.dots || points.is_empty() {
            continue;
        }
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"><title>{}</title></polyline>",
            colour(*i),
            points.join(" "),
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_every_special_character() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 1.0), [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        let t = ticks(3.0, 97.0);
        assert!(
            t.first().unwrap() >= &3.0 && t.last().unwrap() <= &97.0 && t.len() >= 4,
            "{t:?}"
        );
    }

    #[test]
    fn index_ticks_are_whole_numbers() {
        assert_eq!(index_ticks(1.0, 3.0), [1.0, 2.0, 3.0]);
        assert_eq!(index_ticks(0.0, 2.0), [0.0, 1.0, 2.0]);
        assert_eq!(index_ticks(1.0, 10.0), [2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(index_ticks(1.0, 100.0), [20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(index_ticks(7.0, 1e6).len(), 5);
        for (lo, hi) in [(1.0, 2.0), (1.0, 4.0), (3.0, 17.0), (0.0, 1234.0), (5.0, 5.0)] {
            let t = index_ticks(lo, hi);
            assert!(t.iter().all(|x| x.fract() == 0.0), "{lo}..{hi}: {t:?}");
            assert!(t.iter().all(|x| (lo..=hi).contains(x)), "{lo}..{hi}: {t:?}");
            assert!(!t.is_empty() && t.len() <= 7, "{lo}..{hi}: {t:?}");
        }
    }

    /// The x axis's tick labels of a chart.
    fn x_labels(svg: &str) -> Vec<String> {
        svg.split("class=\"xt\">")
            .skip(1)
            .map(|rest| rest[..rest.find('<').unwrap()].to_owned())
            .collect()
    }

    #[test]
    fn a_chart_of_three_epochs_has_ticks_at_epochs_only() {
        let svg = chart(
            "val loss",
            &[(0, "a", vec![(1.0, 0.5), (2.0, 0.4), (3.0, 0.3)])],
            false,
        );
        assert_eq!(x_labels(&svg), ["1", "2", "3"], "{svg}");
        // One epoch alone: whole numbers around it.
        let svg = chart("val loss", &[(0, "a", vec![(1.0, 0.5)])], false);
        assert_eq!(x_labels(&svg), ["0", "1", "2"], "{svg}");
        // Steps: whole and round.
        let steps: Vec<(f64, f64)> = (1..=37)
            .map(|s| (f64::from(s) * 7.0, 1.0 / f64::from(s)))
            .collect();
        let labels = x_labels(&chart("train loss", &[(0, "a", steps)], false));
        assert_eq!(labels, ["50", "100", "150", "200", "250"], "{labels:?}");
    }

    #[test]
    fn a_stacked_bar_splits_each_run_by_its_shares() {
        let rows = vec![
            ("a".to_owned(), vec![1.0, 3.0, 0.0]),
            ("b<".to_owned(), vec![0.0, 0.0, 2.0]),
        ];
        let svg = stacked_bars(&rows, &["data", "compute", "other"]);
        assert!(
            svg.contains("data: 1.000 s (25.0%)") && svg.contains("compute: 3.000 s (75.0%)"),
            "{svg}"
        );
        assert!(
            svg.contains("other: 2.000 s (100.0%)") && svg.contains("b&lt;"),
            "{svg}"
        );
        assert!(!svg.contains("other: 0.000"), "an empty part draws nothing");
        assert_eq!(stacked_bars(&[], &["data"]), "");
    }

    #[test]
    fn a_chart_draws_a_line_per_run_with_axes() {
        let series = vec![
            (0, "a", vec![(1.0, 0.5), (2.0, 0.25)]),
            (1, "<b>", vec![(1.0, 0.4), (2.0, 0.3)]),
        ];
        let svg = chart("val loss", &series, false);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        assert!(svg.matches("class=\"yt\"").count() >= 3);
        let log = chart("lr", &[(0, "a", vec![(1.0, 1e-4), (2.0, 1e-2)])], true);
        assert!(log.contains(">0.001<") || log.contains(">1e-3<"), "{log}");
    }
}
