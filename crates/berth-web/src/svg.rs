//! Pictures drawn on the server as SVG (docs/dashboard.md#pictures): an application's topology
//! and the gateway's per-minute charts. Pure functions of their input; every text is escaped
//! here (the templates insert the result unescaped).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// `&`, `<`, `>`, `"`, `'` as XML entities.
#[must_use]
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// At most `n` characters, with `…` when cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// One service of the picture.
#[derive(Debug, Clone, Default)]
pub struct Service {
    pub name: String,
    /// A second line: replicas and image.
    pub detail: String,
    /// Services of the application it depends on (`depends_on`).
    pub depends_on: Vec<String>,
    /// What it uses outside the application: market entries, named volumes.
    pub uses: Vec<String>,
}

/// What reaches a service from outside: an HTTP route or a published port.
#[derive(Debug, Clone)]
pub struct Entry {
    pub label: String,
    pub service: String,
}

/// An application's services, what reaches them and what they use.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub services: Vec<Service>,
    pub entries: Vec<Entry>,
}

const W: i64 = 190;
const H: i64 = 46;
const GAP_X: i64 = 70;
const GAP_Y: i64 = 18;
const PAD: i64 = 10;

/// Boxes in columns: routes and ports, then the services (a service left of what it depends
/// on), then what they use; arrows from caller to callee.
#[must_use]
pub fn topology(t: &Topology) -> String {
    let names: BTreeSet<&str> = t.services.iter().map(|s| s.name.as_str()).collect();
    // Depth: 0 for a service that depends on nothing here, else 1 + its deepest dependency
    // (bounded, in case of a cycle Compose validation let through).
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..=t.services.len() {
        for s in &t.services {
            let d = s
                .depends_on
                .iter()
                .filter(|d| names.contains(d.as_str()) && d.as_str() != s.name)
                .map(|d| depth.get(d.as_str()).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0)
                .min(t.services.len());
            depth.insert(&s.name, d);
        }
    }
    let max_depth = depth.values().copied().max().unwrap_or(0);
    let has_entries = !t.entries.is_empty();
    let first_service_col = usize::from(has_entries);
    let uses: BTreeSet<&str> = t
        .services
        .iter()
        .flat_map(|s| s.uses.iter().map(String::as_str))
        .collect();
    let uses_col = first_service_col + max_depth + 1;
    // Column of each node, rows in order.
    let mut columns: Vec<Vec<(String, String, String)>> = vec![Vec::new(); uses_col + 1];
    for e in &t.entries {
        columns[0].push((format!("entry:{}", e.label), e.label.clone(), String::new()));
    }
    for s in &t.services {
        let col = first_service_col + max_depth - depth[s.name.as_str()];
        columns[col].push((format!("svc:{}", s.name), s.name.clone(), s.detail.clone()));
    }
    for u in &uses {
        columns[uses_col].push((format!("use:{u}"), (*u).to_string(), String::new()));
    }
    let rows = columns.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let cols = columns.iter().filter(|c| !c.is_empty()).count().max(1);
    // Place, skipping empty columns.
    let mut at: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut x = PAD;
    let mut body = String::new();
    for col in &columns {
        if col.is_empty() {
            continue;
        }
        for (i, (key, title, detail)) in col.iter().enumerate() {
            let y = PAD + i64::try_from(i).unwrap_or(0) * (H + GAP_Y);
            at.insert(key.clone(), (x, y));
            let class = key.split(':').next().unwrap_or("svc");
            let _ = write!(
                body,
                "<g class=\"node {class}\"><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"6\"/>"
            );
            if detail.is_empty() {
                let _ = write!(
                    body,
                    "<text x=\"{}\" y=\"{}\">{}</text></g>",
                    x + 10,
                    y + 28,
                    esc(&cut(title, 24))
                );
            } else {
                let _ = write!(
                    body,
                    "<text x=\"{}\" y=\"{}\" class=\"title\">{}</text><text x=\"{}\" y=\"{}\" class=\"detail\">{}</text></g>",
                    x + 10,
                    y + 19,
                    esc(&cut(title, 24)),
                    x + 10,
                    y + 37,
                    esc(&cut(detail, 28))
                );
            }
        }
        x += W + GAP_X;
    }
    let mut edges = String::new();
    let mut edge = |from: &str, to: &str, class: &str| {
        if let (Some(&(x1, y1)), Some(&(x2, y2))) = (at.get(from), at.get(to)) {
            let (sx, ex) = if x2 >= x1 { (x1 + W, x2) } else { (x1, x2 + W) };
            let _ = write!(
                edges,
                "<line class=\"edge {class}\" x1=\"{sx}\" y1=\"{}\" x2=\"{ex}\" y2=\"{}\" marker-end=\"url(#arrow)\"/>",
                y1 + H / 2,
                y2 + H / 2
            );
        }
    };
    for e in &t.entries {
        edge(
            &format!("entry:{}", e.label),
            &format!("svc:{}", e.service),
            "route",
        );
    }
    for s in &t.services {
        for d in &s.depends_on {
            edge(&format!("svc:{}", s.name), &format!("svc:{d}"), "depends");
        }
        for u in &s.uses {
            edge(&format!("svc:{}", s.name), &format!("use:{u}"), "uses");
        }
    }
    let width = PAD * 2 + i64::try_from(cols).unwrap_or(1) * (W + GAP_X) - GAP_X;
    let height = PAD * 2 + i64::try_from(rows).unwrap_or(1) * (H + GAP_Y) - GAP_Y;
    let mut label = format!("Topology: {} services", t.services.len());
    if has_entries {
        let _ = write!(label, ", {} routes and ports", t.entries.len());
    }
    format!(
        "<svg class=\"topology\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" role=\"img\" aria-label=\"{}\"><title>{}</title><defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>{edges}{body}</svg>",
        esc(&label),
        esc(&label)
    )
}

/// One line of a chart: a label and one value per minute (oldest first, `None`: no figure).
pub struct Series<'a> {
    pub label: &'a str,
    pub class: &'a str,
    pub values: &'a [Option<f64>],
}

/// A line chart of per-minute values over the last hour, with its maximum on the axis.
#[must_use]
pub fn chart(title: &str, unit: &str, series: &[Series<'_>]) -> String {
    const CW: f64 = 300.0;
    const CH: f64 = 90.0;
    const TOP: f64 = 14.0;
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .copied()
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { max } else { 1.0 };
    let mut lines = String::new();
    for s in series {
        let n = s.values.len().max(2);
        #[allow(clippy::cast_precision_loss)]
        let step = CW / (n - 1) as f64;
        // A polyline per run of minutes with figures; a lone minute is a dot.
        let mut run: Vec<(f64, f64)> = Vec::new();
        let flush = |run: &mut Vec<(f64, f64)>, lines: &mut String| {
            match run.len() {
                0 => {}
                1 => {
                    let _ = write!(
                        lines,
                        "<circle class=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\"/>",
                        s.class, run[0].0, run[0].1
                    );
                }
                _ => {
                    let pts: Vec<String> =
                        run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                    let _ = write!(
                        lines,
                        "<polyline class=\"{}\" points=\"{}\"/>",
                        s.class,
                        pts.join(" ")
                    );
                }
            }
            run.clear();
        };
        for (i, v) in s.values.iter().enumerate() {
            match v {
                Some(v) => {
                    #[allow(clippy::cast_precision_loss)]
                    let x = i as f64 * step;
                    let y = TOP + CH - (v / scale) * CH;
                    run.push((x, y));
                }
                None => flush(&mut run, &mut lines),
            }
        }
        flush(&mut run, &mut lines);
    }
    let legend: Vec<String> = series
        .iter()
        .map(|s| format!("<tspan class=\"{}\">{}</tspan>", s.class, esc(s.label)))
        .collect();
    let latest: Vec<String> = series
        .iter()
        .map(|s| {
            s.values.iter().rev().flatten().next().map_or_else(
                || format!("{}: -", s.label),
                |v| format!("{}: {}", s.label, fmt_num(*v)),
            )
        })
        .collect();
    let aria = format!(
        "{title} over the last hour, maximum {} {unit}; latest {}",
        fmt_num(max),
        latest.join(", ")
    );
    format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"-4 0 {} {}\" role=\"img\" aria-label=\"{}\"><title>{}</title><text x=\"0\" y=\"10\" class=\"legend\">{} {}</text><text x=\"{CW}\" y=\"10\" text-anchor=\"end\" class=\"axis\">max {} {}</text><line class=\"base\" x1=\"0\" y1=\"{}\" x2=\"{CW}\" y2=\"{}\"/>{lines}<text x=\"0\" y=\"{}\" class=\"axis\">-60 min</text><text x=\"{CW}\" y=\"{}\" text-anchor=\"end\" class=\"axis\">now</text></svg>",
        CW + 8.0,
        TOP + CH + 16.0,
        esc(&aria),
        esc(&aria),
        esc(title),
        legend.join(" "),
        esc(&fmt_num(max)),
        esc(unit),
        TOP + CH,
        TOP + CH,
        TOP + CH + 13.0,
        TOP + CH + 13.0,
    )
}

/// A figure with at most two decimals, without trailing zeros.
#[must_use]
pub fn fmt_num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, deps: &[&str], uses: &[&str]) -> Service {
        Service {
            name: name.into(),
            detail: "1 replica".into(),
            depends_on: deps.iter().map(|s| (*s).to_string()).collect(),
            uses: uses.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    #[test]
    fn callers_left_of_what_they_depend_on_and_routes_first() {
        let t = Topology {
            services: vec![
                svc("db", &[], &["volume data"]),
                svc("web", &["db"], &["market shop/pay"]),
            ],
            entries: vec![Entry {
                label: "/ → web".into(),
                service: "web".into(),
            }],
        };
        let svg = topology(&t);
        let x_of = |name: &str| {
            let at = svg.find(&format!(">{name}</text>")).unwrap();
            let rect = svg[..at].rfind("<rect x=\"").unwrap();
            let rest = &svg[rect + 9..];
            rest[..rest.find('"').unwrap()].parse::<i64>().unwrap()
        };
        assert!(x_of("/ → web") < x_of("web"), "{svg}");
        assert!(x_of("web") < x_of("db"), "{svg}");
        assert!(x_of("db") < x_of("volume data"), "{svg}");
        // Route → web, web → db, web → market, db → volume.
        assert_eq!(svg.matches("<line class=\"edge").count(), 4, "{svg}");
        assert_eq!(svg.matches("class=\"edge depends\"").count(), 1, "{svg}");
    }

    #[test]
    fn text_is_escaped_and_cycles_do_not_hang() {
        let t = Topology {
            services: vec![svc("a<b", &["c"], &[]), svc("c", &["a<b"], &[])],
            entries: vec![],
        };
        let svg = topology(&t);
        assert!(svg.contains("a&lt;b"), "{svg}");
        assert!(!svg.contains("a<b"), "{svg}");
    }

    #[test]
    fn a_chart_draws_runs_and_says_its_maximum() {
        let v = [Some(1.0), Some(3.0), None, Some(2.0)];
        let svg = chart(
            "Requests",
            "per minute",
            &[Series {
                label: "requests",
                class: "s1",
                values: &v,
            }],
        );
        assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        assert!(svg.contains("max 3 per minute"), "{svg}");
        assert!(svg.contains("latest requests: 2"), "{svg}");
        assert_eq!(fmt_num(0.126), "0.13");
        assert_eq!(fmt_num(2.0), "2");
    }
}
