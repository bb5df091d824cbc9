//! Test reports a pipeline step declares (`reports: {junit: PATH}`), read after the step.
//!
//! JUnit XML as test runners write it: a `<testsuites>` or a `<testsuite>` root, `<testcase>`
//! elements anywhere below, a case failed when it holds `<failure>` or `<error>`, skipped when
//! it holds `<skipped>`. Counts come from the cases, not from the suites' attributes (which
//! runners fill in differently).

use berth_core::api::TestReport;

/// At most this many failing case names are kept.
const MAX_FAILING: usize = 50;

/// Reports larger than this are not read (a report is evidence, not a log).
pub const MAX_REPORT_BYTES: u64 = 8 << 20;

/// Parse a JUnit report; `path` is what the step declared.
#[must_use]
pub fn parse_junit(path: &str, text: &str) -> TestReport {
    let mut report = TestReport {
        path: path.to_string(),
        ..TestReport::default()
    };
    let doc = match roxmltree::Document::parse(text) {
        Ok(d) => d,
        Err(e) => {
            report.problem = Some(format!("not XML: {e}"));
            return report;
        }
    };
    let root = doc.root_element().tag_name().name();
    if root != "testsuites" && root != "testsuite" {
        report.problem = Some(format!(
            "not a JUnit report (its root is <{root}>, not <testsuites> or <testsuite>)"
        ));
        return report;
    }
    for case in doc
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "testcase")
    {
        let outcome = case
            .children()
            .filter(roxmltree::Node::is_element)
            .map(|c| c.tag_name().name())
            .find(|n| matches!(*n, "failure" | "error" | "skipped"));
        match outcome {
            Some("failure" | "error") => {
                report.failed += 1;
                if report.failing.len() < MAX_FAILING {
                    report.failing.push(case_name(case));
                }
            }
            Some(_) => report.skipped += 1,
            None => report.passed += 1,
        }
    }
    report
}

/// A report that could not be read at all.
#[must_use]
pub fn missing(path: &str, why: &str) -> TestReport {
    TestReport {
        path: path.to_string(),
        problem: Some(why.to_string()),
        ..TestReport::default()
    }
}

fn case_name(case: roxmltree::Node<'_, '_>) -> String {
    let name = case.attribute("name").unwrap_or("(unnamed)");
    let full = match case.attribute("classname").filter(|c| !c.is_empty()) {
        Some(class) => format!("{class}.{name}"),
        None => name.to_string(),
    };
    let message = case
        .children()
        .find(|c| c.is_element() && matches!(c.tag_name().name(), "failure" | "error"))
        .and_then(|f| {
            f.attribute("message")
                .map(str::to_string)
                .or_else(|| f.text().map(str::to_string))
        })
        .and_then(|m| {
            m.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        });
    match message {
        Some(m) => format!("{full}: {}", truncate(&m, 200)),
        None => full,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cases_and_names_failures() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" failures="1">
  <testsuite name="orders" tests="4">
    <testcase classname="orders.api" name="creates"/>
    <testcase classname="orders.api" name="refunds"><failure message="expected 200, got 500">trace</failure></testcase>
    <testcase classname="orders.api" name="lists"><skipped/></testcase>
    <testcase name="boots"><error>panic: boom
at line 3</error></testcase>
  </testsuite>
  <testsuite name="empty"/>
</testsuites>"#;
        let r = parse_junit("reports/junit.xml", xml);
        assert_eq!(r.problem, None);
        assert_eq!((r.passed, r.failed, r.skipped), (1, 2, 1));
        assert_eq!(
            r.failing,
            [
                "orders.api.refunds: expected 200, got 500",
                "boots: panic: boom"
            ]
        );
    }

    #[test]
    fn a_single_suite_root_is_a_report() {
        let r = parse_junit("r.xml", r#"<testsuite><testcase name="a"/></testsuite>"#);
        assert_eq!((r.passed, r.failed, r.skipped, r.problem), (1, 0, 0, None));
    }

    #[test]
    fn what_is_not_a_report_says_why() {
        let r = parse_junit("r.xml", "<html><body/></html>");
        assert!(r.problem.unwrap().contains("<html>"));
        let r = parse_junit("r.xml", "passed: 3");
        assert!(r.problem.unwrap().starts_with("not XML"));
        assert_eq!(r.passed, 0);
    }

    #[test]
    fn failing_names_are_bounded() {
        let cases: String = (0..80)
            .map(|i| {
                format!(
                    r#"<testcase name="t{i}"><failure message="{}"/></testcase>"#,
                    "x".repeat(300)
                )
            })
            .collect();
        let r = parse_junit("r.xml", &format!("<testsuite>{cases}</testsuite>"));
        assert_eq!(r.failed, 80);
        assert_eq!(r.failing.len(), MAX_FAILING);
        assert!(r.failing[0].chars().count() < 220);
    }
}
