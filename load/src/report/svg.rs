//! Line charts as inline SVG, drawn here so the report needs nothing from the network.

use std::fmt::Write as _;

/// One line of a chart.
#[derive(Debug)]
pub struct Line<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// A chart: title, y-axis unit, lines, log scale or not, and labelled x markers
/// (vertical rules, e.g. where a capacity trial starts).
#[derive(Debug)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub unit: &'a str,
    pub lines: Vec<Line<'a>>,
    pub log_y: bool,
    pub markers: Vec<(f64, String)>,
}

const W: f64 = 920.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 40.0;

impl Chart<'_> {
    #[must_use]
    pub fn render(&self) -> String {
        let all = || self.lines.iter().flat_map(|l| l.points.iter().copied());
        let x_max = all().map(|p| p.0).fold(1.0_f64, f64::max);
        let y_max_raw = all().map(|p| p.1).fold(0.0_f64, f64::max);
        let (y_lo, y_hi) = if self.log_y {
            let min = all()
                .map(|p| p.1)
                .filter(|v| *v > 0.0)
                .fold(f64::INFINITY, f64::min);
            let lo = if min.is_finite() {
                10f64.powf(min.log10().floor())
            } else {
                0.1
            };
            let hi = 10f64.powf(y_max_raw.max(lo * 10.0).log10().ceil());
            (lo, hi)
        } else {
            (0.0, nice_ceiling(y_max_raw.max(1.0)))
        };
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let sx = |x: f64| LEFT + x / x_max * pw;
        let sy = |y: f64| {
            let f = if self.log_y {
                (y.max(y_lo).log10() - y_lo.log10()) / (y_hi.log10() - y_lo.log10())
            } else {
                (y - y_lo) / (y_hi - y_lo)
            };
            TOP + ph - f.clamp(0.0, 1.0) * ph
        };

        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(
            s,
            r#"<text x="{LEFT}" y="18" font-size="15" font-weight="bold">{}</text>"#,
            esc(self.title)
        );
        // Horizontal grid and y labels.
        let ticks: Vec<f64> = if self.log_y {
            let mut v = Vec::new();
            let mut t = y_lo;
            while t <= y_hi * 1.0001 {
                v.push(t);
                t *= 10.0;
            }
            v
        } else {
            (0..=5).map(|i| y_hi * f64::from(i) / 5.0).collect()
        };
        for t in ticks {
            let y = sy(t);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                label(t)
            );
        }
        let _ = write!(
            s,
            r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            esc(self.unit)
        );
        // X axis: about eight labelled seconds.
        let step = nice_ceiling(x_max / 8.0).max(1.0);
        let mut x = 0.0;
        while x <= x_max + 1e-9 {
            let px = sx(x);
            let _ = write!(
                s,
                r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#999"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}s</text>"##,
                TOP + ph,
                TOP + ph + 4.0,
                TOP + ph + 18.0,
                label(x)
            );
            x += step;
        }
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        for (mx, text) in &self.markers {
            let px = sx(*mx);
            let _ = write!(
                s,
                r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#555">{}</text>"##,
                TOP + ph,
                px + 3.0,
                TOP + 11.0,
                esc(text)
            );
        }
        // Lines, then the legend.
        for l in &self.lines {
            if l.points.is_empty() {
                continue;
            }
            let pts = l
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect::<Vec<_>>()
                .join(" ");
            let dash = if l.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{pts}"><title>{}</title></polyline>"#,
                l.color,
                esc(l.name)
            );
        }
        let mut lx = W - RIGHT;
        for l in self.lines.iter().rev() {
            let w = 24.0 + 7.0 * l.name.chars().count() as f64;
            lx -= w;
            let _ = write!(
                s,
                r#"<rect x="{lx:.1}" y="26" width="12" height="4" fill="{}"/><text x="{:.1}" y="32">{}</text>"#,
                l.color,
                lx + 16.0,
                esc(l.name)
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// The smallest 1, 2 or 5 × 10^k at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= v * 0.999_999 {
            return m * mag;
        }
    }
    10.0 * mag
}

fn label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1_000_000.0 {
        format!("{}M", trim(v / 1_000_000.0))
    } else if v.abs() >= 10_000.0 {
        format!("{}k", trim(v / 1000.0))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Escapes text for HTML and SVG.
#[must_use]
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_numbers_and_labels() {
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(1300.0), 2000.0);
        assert_eq!(label(40_000.0), "40k");
        assert_eq!(label(0.25), "0.25");
        assert_eq!(esc("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
