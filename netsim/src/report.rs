//! Reports of a `netsim bench` run: a Markdown page with the latency table, and latency CDF
//! plots as SVG files beside it.
//!
//! The plots are drawn as plain SVG (axes, one polyline per transport, a legend): a CDF needs
//! nothing more, and a plotting crate would bring font handling that headless CI machines
//! do not have.

use std::fmt::Write as _;

use serde_json::Value;

/// The colours of the transports' lines, in report order.
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "–".into(),
    }
}

fn ratio(v: &Value) -> String {
    v.as_f64().map_or_else(|| "–".into(), |x| format!("{:.1}%", x * 100.0))
}

/// The Markdown report for `result` (what [`crate::bench::run`] returned); `plots` are the
/// file names of the cursor and op-delivery CDF plots, relative to the report.
pub fn markdown(result: &Value, plots: (&str, &str)) -> String {
    let mut md = String::new();
    let scenario = result["scenario"].as_str().unwrap_or("?");
    let _ = writeln!(md, "# netsim bench: `{scenario}`, {} clients\n", result["clients"]);
    let _ = writeln!(md, "{}\n", result["description"].as_str().unwrap_or(""));
    let _ = writeln!(
        md,
        "Warm-up {} s, then {} s measured; {} of the clients are full SDK clients that measure delivery, the \
         rest protocol clients; proxy seed {}; {} CPU cores shared by the server, the proxy and the load \
         generator.\n",
        result["warmup_s"], result["duration_s"], result["observers"], result["seed"], result["cores"]
    );
    md.push_str(
        "| transport | cursor p50 / p95 / p99 / max (ms) | cursors delivered | op ack p50 / p99 (ms) | \
         op delivery p50 / p95 / p99 / max (ms) | ops delivered | bytes/client/s up / down | server CPU | clients |\n",
    );
    md.push_str("|---|---|---|---|---|---|---|---|---|\n");
    if let Some(transports) = result["transports"].as_object() {
        for (name, t) in transports {
            // A histogram with no samples in the window reads as "–", not as 0 ms.
            let none = Value::Null;
            let lat = |k: &str| {
                let l = &t[k]["latency"];
                if l["samples"].as_u64().unwrap_or(0) == 0 { &none } else { l }
            };
            let c = lat("cursor");
            let a = lat("op_ack");
            let d = lat("op_delivery");
            let _ = writeln!(
                md,
                "| {name} | {} / {} / {} / {} | {} | {} / {} | {} / {} / {} / {} | {} | {} / {} | {}% | {}/{} |",
                num(&c["p50_ms"]),
                num(&c["p95_ms"]),
                num(&c["p99_ms"]),
                num(&c["max_ms"]),
                ratio(&t["cursor"]["ratio"]),
                num(&a["p50_ms"]),
                num(&a["p99_ms"]),
                num(&d["p50_ms"]),
                num(&d["p95_ms"]),
                num(&d["p99_ms"]),
                num(&d["max_ms"]),
                ratio(&t["op_delivery"]["ratio"]),
                num(&t["network"]["bytes_per_client_per_sec_up"]),
                num(&t["network"]["bytes_per_client_per_sec_down"]),
                num(&t["server"]["cpu_percent"]),
                t["connected"],
                t["clients"],
            );
        }
    }
    let _ = writeln!(
        md,
        "\n![cursor delivery latency CDF]({})\n\n![op delivery latency CDF]({})\n",
        plots.0, plots.1
    );
    md.push_str(
        "Cursor latency: a sender's cursor call → the position reaching an observer (SDK throttle, server \
         cursor pacing and the network included). Op ack: local edit → the server's durable ack. Op delivery: \
         local edit → in an observer's document. \"Delivered\" counts what observers received against what \
         the others sent during the window; cursors are latest-wins, so a position superseded within one \
         server pace interval is not delivered by design. Bytes are what crossed the proxy, divided by clients and \
         the whole run (arrival and warm-up included).\n",
    );
    md
}

/// A CDF plot of `metric` (`cursor` or `op_delivery`) for every transport in `result`, as SVG.
pub fn cdf_svg(result: &Value, metric: &str, title: &str) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 420.0, 70.0, 20.0, 40.0, 50.0);
    let series: Vec<(String, Vec<(f64, f64)>)> = result["transports"]
        .as_object()
        .map(|t| {
            t.iter()
                .map(|(name, v)| {
                    let points = v[metric]["latency"]["cdf"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    (name.clone(), points)
                })
                .collect()
        })
        .unwrap_or_default();
    // A log latency axis: loopback sub-millisecond and WAN seconds fit one picture.
    let max = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).fold(1.0_f64, f64::max);
    let (lo, hi) = (0.1_f64.log10(), (max * 1.2).log10().max(1.0));
    let x = |ms: f64| left + (ms.max(0.1).log10() - lo) / (hi - lo) * (w - left - right);
    let y = |q: f64| top + (1.0 - q) * (h - top - bottom);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ =
        writeln!(svg, r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{title}</text>"#, w / 2.0);
    // Grid and ticks: decades on x, quarters on y.
    let mut decade = 10f64.powf(lo.floor());
    while decade.log10() <= hi {
        if decade.log10() >= lo {
            let px = x(decade);
            let label = if decade < 1.0 { format!("{decade}") } else { format!("{decade:.0}") };
            let _ = writeln!(
                svg,
                r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{}" stroke="#ddd"/>"##,
                h - bottom
            );
            let _ = writeln!(
                svg,
                r#"<text x="{px:.1}" y="{}" text-anchor="middle">{label}</text>"#,
                h - bottom + 16.0
            );
        }
        decade *= 10.0;
    }
    for q in [0.0, 0.25, 0.5, 0.75, 0.9, 1.0] {
        let py = y(q);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#ddd"/>"##,
            w - right
        );
        let _ = writeln!(svg, r#"<text x="{}" y="{:.1}" text-anchor="end">{q}</text>"#, left - 6.0, py + 4.0);
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">latency (ms, log scale)</text>"#,
        (left + w - right) / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">fraction delivered within</text>"#,
        h / 2.0,
        h / 2.0
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points.iter().map(|(ms, q)| format!("{:.1},{:.1}", x(*ms), y(*q))).collect();
        if !path.is_empty() {
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        let ly = top + 14.0 + 18.0 * i as f64;
        let lx = left + 12.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/>"#,
            lx + 24.0
        );
        let _ = writeln!(svg, r#"<text x="{}" y="{}">{name}</text>"#, lx + 30.0, ly + 4.0);
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn result() -> Value {
        let t = |p50: f64| {
            json!({
                "cursor": {"latency": {"samples": 10, "p50_ms": p50, "p95_ms": 2.0, "p99_ms": 3.0, "max_ms": 4.0,
                    "cdf": [[p50, 0.5], [4.0, 1.0]]}, "ratio": 0.99},
                "op_ack": {"latency": {"samples": 0, "p50_ms": 0.0, "p99_ms": 0.0}},
                "op_delivery": {"latency": {"samples": 10, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0, "max_ms": 4.0, "cdf": []}, "ratio": 1.0},
                "network": {"bytes_per_client_per_sec_up": 1000.0, "bytes_per_client_per_sec_down": 5000.0},
                "server": {"cpu_percent": 12.5},
                "connected": 50, "clients": 50,
            })
        };
        json!({"scenario": "lossy-2pct", "description": "d", "clients": 50, "warmup_s": 5, "duration_s": 30,
            "seed": 1, "cores": 2, "transports": {"quic": t(1.5), "ws": t(9.0)}})
    }

    #[test]
    fn the_table_has_a_row_per_transport() {
        let md = markdown(&result(), ("c.svg", "o.svg"));
        assert!(md.contains("| quic | 1.5 / 2.0 / 3.0 / 4.0 | 99.0% |"), "{md}");
        assert!(md.contains("| ws | 9.0 /"));
        assert!(md.contains("| – / – |"), "an empty histogram is no measurement, not 0 ms: {md}");
        assert!(md.contains("![cursor delivery latency CDF](c.svg)"));
    }

    #[test]
    fn the_plot_has_a_line_per_transport_with_data() {
        let svg = cdf_svg(&result(), "cursor", "cursor");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let empty = cdf_svg(&result(), "op_delivery", "ops");
        assert_eq!(empty.matches("<polyline").count(), 0, "no samples, no line");
    }
}
