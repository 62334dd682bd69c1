//! `mote inspect --plan-svg`: the arena plan as a picture.
//!
//! Time (op index, execution order) runs across, arena offset runs up, and each buffer is one
//! rectangle spanning the ops during which it lives, at its offset and height. Buffers alive at
//! the op where the arena is fullest are drawn in orange, that op in a red band, the arena's size
//! as a dashed line on top — so what sets the peak is visible at a glance. Every rectangle has a
//! tooltip with its offset, size and lifetime; labels are drawn where they fit.

use std::fmt::Write;

use crate::arena_report::{short_label, ArenaReport, ArenaRow};
use crate::inspect::group;

const PLOT_H: f64 = 460.0;
const LEFT: f64 = 96.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 72.0;
const BOTTOM: f64 = 150.0;
/// Approximate advance of one character at the label font size.
const CHAR_W: f64 = 6.3;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The longest prefix of `s` (plus `…`) that fits `width` pixels, or `None` if not even 3
/// characters fit.
fn fit(s: &str, width: f64) -> Option<String> {
    let max = ((width - 6.0) / CHAR_W).floor() as usize;
    let n = s.chars().count();
    if n <= max {
        Some(s.to_string())
    } else if max >= 4 {
        Some(s.chars().take(max - 1).collect::<String>() + "…")
    } else {
        None
    }
}

/// Draws `r` as an SVG document titled `title`.
pub fn render(r: &ArenaReport, title: &str) -> String {
    let n_ops = r.ops.len().max(1);
    let col = (900.0 / n_ops as f64).clamp(22.0, 90.0);
    let plot_w = col * n_ops as f64;
    let width = LEFT + plot_w + RIGHT;
    let height = TOP + PLOT_H + BOTTOM;
    let arena = r.arena_bytes.max(1) as f64;
    let y_of = |offset: f64| TOP + PLOT_H - offset / arena * PLOT_H;
    let x_of = |op: usize| LEFT + op as f64 * col;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let peak_label = r.ops.get(r.peak_op).map_or("", String::as_str);
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="44" font-size="12" fill="#333">arena {} bytes · fullest at op {} ({}) with {} bytes live (orange) · x: op index · y: arena offset</text>"##,
        group(r.arena_bytes as u64),
        r.peak_op,
        escape(peak_label),
        group(r.peak_live_bytes as u64)
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="58" font-size="11" fill="#666">one rectangle per buffer over the ops it lives; an op computing in place takes over its input's bytes mid-column (hover for offsets)</text>"##
    );
    // Plot frame and the peak op's band.
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{PLOT_H}" fill="#f7f7f7" stroke="#999"/>"##
    );
    let _ = writeln!(
        s,
        r##"<rect x="{:.1}" y="{TOP}" width="{col:.1}" height="{PLOT_H}" fill="#e15759" fill-opacity="0.12"/>"##,
        x_of(r.peak_op)
    );
    // Horizontal grid and offset ticks.
    for k in 0..=4 {
        let off = r.arena_bytes as f64 * k as f64 / 4.0;
        let y = y_of(off);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#333">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            group(off.round() as u64)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="16" y="{:.1}" font-size="12" fill="#333" transform="rotate(-90 16 {:.1})" text-anchor="middle">arena offset (bytes)</text>"##,
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0
    );
    // Buffers: peak ones last so that they are on top; labels after all rectangles. A buffer
    // that an op overwrites in place hands over at the middle of that op's column.
    const PALETTE: [(&str, &str); 6] = [
        ("#76a5d6", "#2c5d8f"),
        ("#8cc084", "#3d7a34"),
        ("#9fd3cf", "#3f8f89"),
        ("#c9a6c4", "#7d4f77"),
        ("#d8c27a", "#8a7424"),
        ("#b8aca8", "#6f6663"),
    ];
    let handed_over = |b: &ArenaRow| {
        b.tensor.is_some_and(|t| {
            r.rows
                .iter()
                .any(|o| o.takes_over == Some(t) && o.first == b.last)
        })
    };
    let mut rows: Vec<(usize, &ArenaRow)> =
        r.rows.iter().filter(|b| b.size > 0).enumerate().collect();
    rows.sort_by_key(|(_, b)| (b.at_peak, b.offset));
    let mut labels = String::new();
    for (k, b) in rows {
        let start = b.first as f64 + if b.takes_over.is_some() { 0.5 } else { 0.0 };
        let end = (b.last + 1) as f64 - if handed_over(b) { 0.5 } else { 0.0 };
        let x = LEFT + start * col + 1.0;
        let w = ((end - start) * col - 2.0).max(1.0);
        let y_top = y_of(b.end() as f64);
        let h = (b.size as f64 / arena * PLOT_H).max(1.0);
        let (fill, stroke) = if b.at_peak {
            ("#f28e2b", "#b35806")
        } else if b.tensor.is_none() {
            ("#bab0ac", "#6f6663")
        } else {
            PALETTE[k % PALETTE.len()]
        };
        let name = match b.tensor {
            Some(t) => format!("t{t} {}", short_label(&b.label)),
            None => b.label.clone(),
        };
        let full = match b.tensor {
            Some(t) => format!("t{t} {}", b.label),
            None => b.label.clone(),
        };
        let tip = format!(
            "{full}: offset {}..{} ({} bytes), ops {}..={}{}",
            b.offset,
            b.end(),
            b.size,
            b.first,
            b.last,
            b.in_place
                .as_ref()
                .map_or(String::new(), |p| format!(", {p}"))
        );
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{y_top:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}" fill-opacity="0.9" stroke="{stroke}" stroke-width="1"><title>{}</title></rect>"#,
            escape(&tip)
        );
        if h >= 13.0 {
            let text = format!("{name} · {} B", group(b.size as u64));
            if let Some(t) = fit(&text, w).or_else(|| fit(&name, w)) {
                let _ = writeln!(
                    labels,
                    r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#111">{}</text>"##,
                    x + 4.0,
                    y_top + h.min(30.0) / 2.0 + 4.0,
                    escape(&t)
                );
            }
        }
    }
    s.push_str(&labels);
    // The arena's size.
    let y = y_of(r.arena_bytes as f64);
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e15759" stroke-width="2" stroke-dasharray="6 4"/>"##,
        LEFT + plot_w
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#e15759">arena {} B</text>"##,
        LEFT + plot_w,
        y - 4.0,
        group(r.arena_bytes as u64)
    );
    // Op labels along the bottom.
    for (i, label) in r.ops.iter().enumerate() {
        let cx = x_of(i) + col / 2.0;
        let y0 = TOP + PLOT_H + 12.0;
        let color = if i == r.peak_op { "#e15759" } else { "#333" };
        let _ = writeln!(
            s,
            r##"<text x="{cx:.1}" y="{y0:.1}" font-size="11" fill="{color}" text-anchor="end" transform="rotate(-50 {cx:.1} {y0:.1})">{}</text>"##,
            escape(label)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" fill="#333" text-anchor="middle">op (execution order)</text>"##,
        LEFT + plot_w / 2.0,
        height - 8.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_buffer_and_the_peak() {
        let r = ArenaReport {
            arena_bytes: 300,
            ops: vec!["0 CONV_2D".into(), "1 RELU".into()],
            rows: vec![
                ArenaRow {
                    label: "input".into(),
                    tensor: Some(0),
                    offset: 0,
                    size: 100,
                    first: 0,
                    last: 0,
                    in_place: None,
                    takes_over: None,
                    at_peak: true,
                },
                ArenaRow {
                    label: "a<b".into(),
                    tensor: Some(1),
                    offset: 100,
                    size: 200,
                    first: 0,
                    last: 1,
                    in_place: Some("alias of t0".into()),
                    takes_over: Some(0),
                    at_peak: true,
                },
            ],
            peak_op: 0,
            peak_live_bytes: 300,
        };
        let svg = render(&r, "test");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 2);
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert!(svg.contains("arena 300 B"));
    }

    #[test]
    fn labels_are_cut_to_fit() {
        assert_eq!(fit("abc", 100.0).as_deref(), Some("abc"));
        assert!(fit("a long label that cannot fit", 60.0)
            .unwrap()
            .ends_with('…'));
        assert_eq!(fit("abcdef", 20.0), None);
    }
}
