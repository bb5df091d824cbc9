//! Drawing an application's graph (`berth app graph --format dot|svg`, docs/market.md): pure
//! functions of the [`AppGraph`] the API answers.

use crate::api::AppGraph;
#[cfg(test)]
use crate::api::GraphEdge;

/// The graph in Graphviz's language.
#[must_use]
pub fn dot(g: &AppGraph) -> String {
    use std::fmt::Write as _;
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box];\n",
        q(&g.app)
    );
    let _ = writeln!(out, "  {} [style=bold];", q(&g.app));
    for e in &g.uses {
        let target = e.app.clone().unwrap_or_else(|| e.entry.clone());
        let label = format!("{} ({})", e.entry, e.via);
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            q(&g.app),
            q(&target),
            q(&label)
        );
    }
    for e in &g.used_by {
        let from = e.app.clone().unwrap_or_default();
        let label = format!("{} ({})", e.entry, e.via);
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            q(&from),
            q(&g.app),
            q(&label)
        );
    }
    out.push_str("}\n");
    out
}

/// The graph as a small SVG: users on the left, the application in the middle, what it uses on
/// the right, one arrow each, labelled with the entry.
#[must_use]
pub fn svg(g: &AppGraph) -> String {
    use std::fmt::Write as _;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let rows = g.uses.len().max(g.used_by.len()).max(1);
    let (w, row_h, box_w, box_h) = (960, 60, 240, 36);
    let h = rows * row_h + 40;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<defs><marker id=\"a\" markerWidth=\"10\" markerHeight=\"7\" refX=\"10\" refY=\"3.5\" orient=\"auto\"><polygon points=\"0 0, 10 3.5, 0 7\"/></marker></defs>\n"
    );
    let node = |out: &mut String, x: usize, y: usize, text: &str, bold: bool| {
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{box_w}\" height=\"{box_h}\" rx=\"6\" fill=\"#fff\" stroke=\"#333\" stroke-width=\"{}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            if bold { 2 } else { 1 },
            x + box_w / 2,
            y + box_h / 2 + 4,
            esc(text)
        );
    };
    let mid_y = h / 2 - box_h / 2;
    let (left, mid, right) = (20, w / 2 - box_w / 2, w - box_w - 20);
    node(&mut out, mid, mid_y, &g.app, true);
    let arrow = |out: &mut String, x1: usize, y1: usize, x2: usize, y2: usize, label: &str| {
        let _ = writeln!(
            out,
            "<line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"#555\" marker-end=\"url(#a)\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
            (x1 + x2) / 2,
            (y1 + y2) / 2 - 4,
            esc(label)
        );
    };
    for (i, e) in g.used_by.iter().enumerate() {
        let y = 20 + i * row_h;
        node(&mut out, left, y, e.app.as_deref().unwrap_or("?"), false);
        arrow(
            &mut out,
            left + box_w,
            y + box_h / 2,
            mid,
            mid_y + box_h / 2,
            &e.entry,
        );
    }
    for (i, e) in g.uses.iter().enumerate() {
        let y = 20 + i * row_h;
        let target = e.app.clone().unwrap_or_else(|| e.entry.clone());
        node(&mut out, right, y, &target, false);
        let label = format!("{} ({})", e.entry, e.via);
        arrow(
            &mut out,
            mid + box_w,
            mid_y + box_h / 2,
            right,
            y + box_h / 2,
            &label,
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> AppGraph {
        AppGraph {
            app: "b/shop".into(),
            uses: vec![
                GraphEdge {
                    entry: "a/orders".into(),
                    app: Some("a/prov".into()),
                    via: "subscription".into(),
                    service: Some("web".into()),
                },
                GraphEdge {
                    entry: "a/stock:v1".into(),
                    app: None,
                    via: "install".into(),
                    service: Some("stock".into()),
                },
            ],
            used_by: vec![GraphEdge {
                entry: "b/shop-api".into(),
                app: Some("c/front".into()),
                via: "subscription".into(),
                service: Some("api".into()),
            }],
        }
    }

    #[test]
    fn dot_has_one_edge_per_use() {
        let d = dot(&graph());
        assert!(d.starts_with("digraph \"b/shop\" {"), "{d}");
        assert!(
            d.contains("\"b/shop\" -> \"a/prov\" [label=\"a/orders (subscription)\"];"),
            "{d}"
        );
        assert!(
            d.contains("\"b/shop\" -> \"a/stock:v1\" [label=\"a/stock:v1 (install)\"];"),
            "{d}"
        );
        assert!(d.contains("\"c/front\" -> \"b/shop\""), "{d}");
    }

    #[test]
    fn svg_is_one_document_with_every_node() {
        let s = svg(&graph());
        assert!(s.starts_with("<svg ") && s.trim_end().ends_with("</svg>"));
        for name in ["b/shop", "a/prov", "a/stock:v1", "c/front"] {
            assert!(s.contains(&format!(">{name}</text>")), "{name}: {s}");
        }
        assert_eq!(s.matches("<line ").count(), 3);
        assert!(svg(&AppGraph {
            app: "<x>".into(),
            uses: vec![],
            used_by: vec![]
        })
        .contains("&lt;x&gt;"));
    }
}
