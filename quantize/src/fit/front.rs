//! The explored candidates of a fit and their Pareto front, as a table and as an SVG plot
//! (flash across, score up; front points joined, the chosen one ringed, the flash budget as a
//! vertical line).

use std::fmt::Write as _;

use super::search::{Candidate, FitResult};
use crate::inspect::group;

fn sorted(r: &FitResult) -> Vec<&Candidate> {
    let mut v: Vec<&Candidate> = r.explored.iter().collect();
    v.sort_by(|a, b| {
        a.flash_bytes
            .cmp(&b.flash_bytes)
            .then(b.score.total_cmp(&a.score))
    });
    v
}

fn is_chosen(r: &FitResult, c: &Candidate) -> bool {
    c.ratio == r.chosen.ratio && c.recipe == r.chosen.recipe && c.channels == r.chosen.channels
}

/// The explored candidates as a table (Pareto-optimal ones marked `*`, the chosen one `>`).
pub fn render_table(r: &FitResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nexplored ({} candidates; * = Pareto front over flash, arena, est. latency and {}; \
         > = chosen; channels = kept per prunable layer group, L = per-layer plan)",
        r.explored.len(),
        r.metric
    );
    let _ = writeln!(
        s,
        "{:>2} {:>7} {:<12} {:<9} {:>9} {:>8} {:>10} {:>11} {:>10} {:>8} {:>4} {:>3}",
        "",
        "pruned",
        "channels",
        "recipe",
        "flash B",
        "arena B",
        "MACs",
        "est. lat.",
        "est. en.",
        "score",
        "ft",
        "ok"
    );
    for c in sorted(r) {
        let _ = writeln!(
            s,
            "{}{} {:>6.1}% {:<12} {:<9} {:>9} {:>8} {:>10} {:>11} {:>10} {:>7.2}% {:>4} {:>3}",
            if is_chosen(r, c) { ">" } else { " " },
            if c.pareto { "*" } else { " " },
            100.0 * c.ratio,
            format!(
                "{}{}",
                c.channels
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                if c.uniform { "" } else { " L" }
            ),
            c.recipe,
            group(c.flash_bytes as u64),
            group(c.arena_bytes as u64),
            group(c.macs),
            crate::bench::fmt_us(c.est_latency_us),
            crate::bench::fmt_uj(c.est_energy_uj),
            100.0 * c.score,
            if c.finetuned { "yes" } else { "no" },
            if c.feasible { "yes" } else { "no" }
        );
    }
    s
}

/// The explored candidates as an SVG scatter plot.
pub fn render_svg(r: &FitResult) -> String {
    let (w, h) = (720.0f64, 440.0f64);
    let (l, rt, t, b) = (70.0, 20.0, 40.0, 50.0);
    let pts = sorted(r);
    let fmax = pts
        .iter()
        .map(|c| c.flash_bytes as f64)
        .fold(r.budget.flash.map_or(0.0, |v| v as f64), f64::max)
        .max(1.0)
        * 1.05;
    let smin = pts
        .iter()
        .map(|c| c.score)
        .fold(r.float_score, f64::min)
        .min(0.999);
    let smin = (smin - 0.02).max(0.0);
    let x = |f: f64| l + (w - l - rt) * f / fmax;
    let y = |sc: f64| t + (h - t - b) * (1.0 - (sc - smin) / (1.0 - smin).max(1e-9));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{l}\" y=\"22\" font-size=\"14\">mote fit on {}: {} vs flash \
         (* Pareto front; latency/energy are estimates)</text>",
        r.target, r.metric
    );
    // Axes and ticks.
    let _ = writeln!(
        s,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\
         <line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"black\"/>",
        h - b,
        w - rt,
        h - b,
        h - b
    );
    for k in 0..=4 {
        let f = fmax * f64::from(k) / 4.0;
        let sc = smin + (1.0 - smin) * f64::from(k) / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.1}%</text>",
            x(f),
            h - b + 16.0,
            group(f as u64),
            l - 6.0,
            y(sc) + 4.0,
            100.0 * sc
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">flash (.mote bytes)</text>",
        (l + w - rt) / 2.0,
        h - 12.0
    );
    if let Some(fb) = r.budget.flash {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{t}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"red\" \
             stroke-dasharray=\"4 3\"/><text x=\"{0:.1}\" y=\"{2}\" fill=\"red\" \
             text-anchor=\"middle\">flash budget</text>",
            x(fb as f64),
            h - b,
            t - 4.0
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"{l}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"gray\" \
         stroke-dasharray=\"2 3\"/><text x=\"{2}\" y=\"{3:.1}\" fill=\"gray\" \
         text-anchor=\"end\">float</text>",
        y(r.float_score),
        w - rt,
        w - rt,
        y(r.float_score) - 3.0
    );
    // Front polyline.
    let front: Vec<String> = pts
        .iter()
        .filter(|c| c.pareto)
        .map(|c| format!("{:.1},{:.1}", x(c.flash_bytes as f64), y(c.score)))
        .collect();
    if front.len() > 1 {
        let _ = writeln!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\"/>",
            front.join(" ")
        );
    }
    for c in &pts {
        let color = if !c.feasible {
            "#bbbbbb"
        } else if c.pareto {
            "#1f77b4"
        } else {
            "#7fb2d9"
        };
        let _ = writeln!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{color}\"><title>pruned {:.1} % \
             {}: {} B flash, {} B arena, {} MACs, {:.2} %{}</title></circle>",
            x(c.flash_bytes as f64),
            y(c.score),
            100.0 * c.ratio,
            c.recipe,
            c.flash_bytes,
            c.arena_bytes,
            c.macs,
            100.0 * c.score,
            if c.finetuned { ", fine-tuned" } else { "" }
        );
        if is_chosen(r, c) {
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"8\" fill=\"none\" stroke=\"black\"/>",
                x(c.flash_bytes as f64),
                y(c.score)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
