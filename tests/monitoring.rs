//! The monitoring that ships in config/monitoring/ names only metrics the daemon really serves.
//!
//! Starts the daemon (library, real sockets, an upstream so that the per-upstream series exist),
//! scrapes its /metrics, and checks every PromQL expression of the alerting rules (the rule
//! file and the PrometheusRule), of the rules' unit tests (their input series too) and of the
//! Grafana dashboard (panels and variables): each `splitdns_*` name must be a series /metrics
//! serves (a histogram's `_bucket`, `_sum` and `_count`; the bare histogram name is no series),
//! each label matched on such a series must be one of its labels (or a target label the scrape
//! adds, or `le` on a bucket), and a matched value of a label with a fixed set of values
//! (`proto`, `outcome`) must be one of those values. A typo in a rule or a panel, or a metric
//! renamed in the daemon, fails here rather than as an alert that silently never fires.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{Daemon, upstream};
use serde::Deserialize;

/// Labels that come from the scrape (Prometheus, the Prometheus Operator), not from splitdns.
const TARGET_LABELS: &[&str] = &[
    "namespace",
    "pod",
    "job",
    "instance",
    "container",
    "endpoint",
    "service",
    "node",
];
/// Labels whose values depend on the configuration or build; the others have a fixed set.
const OPEN_LABELS: &[&str] = &["upstream", "hash", "version", "le"];

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/monitoring")
}

fn read(name: &str) -> String {
    let path = monitoring_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn get_metrics(addr: SocketAddr) -> String {
    let (status, body) = common::http_get(addr, "/metrics");
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

/// What /metrics serves: series name -> label -> values seen; histogram family names.
#[derive(Default, Debug)]
struct Exported {
    series: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    histograms: BTreeSet<String>,
}

fn parse_exposition(text: &str) -> Exported {
    let mut e = Exported::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some("histogram")) = (it.next(), it.next()) {
                e.histograms.insert(name.to_owned());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, matchers, _) = selector(line, 0);
        let labels = e.series.entry(name).or_default();
        for m in matchers {
            labels.entry(m.label).or_default().insert(m.value);
        }
    }
    e
}

/// One label matcher of a selector (or one label of an exposition line).
#[derive(Debug)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// Reads a quoted string starting at `i` (the quote); returns its unescaped value and the index
/// after the closing quote.
fn quoted(s: &[u8], i: usize) -> (String, usize) {
    let q = s[i];
    let mut out = Vec::new();
    let mut j = i + 1;
    while j < s.len() && s[j] != q {
        if s[j] == b'\\' && j + 1 < s.len() && q != b'`' {
            j += 1;
        }
        out.push(s[j]);
        j += 1;
    }
    (String::from_utf8_lossy(&out).into_owned(), j + 1)
}

/// Reads a metric name at `i` and its `{...}` matchers if any; returns them and the index after.
fn selector(text: &str, i: usize) -> (String, Vec<Matcher>, usize) {
    let s = text.as_bytes();
    let mut j = i;
    while j < s.len() && is_ident(s[j]) {
        j += 1;
    }
    let name = text[i..j].to_owned();
    let mut k = j;
    while k < s.len() && s[k] == b' ' {
        k += 1;
    }
    let mut matchers = Vec::new();
    if k < s.len() && s[k] == b'{' {
        k += 1;
        loop {
            while k < s.len() && (s[k] == b' ' || s[k] == b',') {
                k += 1;
            }
            if k >= s.len() || s[k] == b'}' {
                return (name, matchers, k + 1);
            }
            let l0 = k;
            while k < s.len() && is_ident(s[k]) {
                k += 1;
            }
            let label = text[l0..k].to_owned();
            while k < s.len() && s[k] == b' ' {
                k += 1;
            }
            let o0 = k;
            while k < s.len() && b"=!~".contains(&s[k]) {
                k += 1;
            }
            let op = text[o0..k].to_owned();
            while k < s.len() && s[k] == b' ' {
                k += 1;
            }
            assert!(
                k < s.len() && b"\"'`".contains(&s[k]),
                "cannot read the selector at {:?}",
                &text[i..]
            );
            let (value, next) = quoted(s, k);
            k = next;
            matchers.push(Matcher { label, op, value });
        }
    }
    (name, matchers, j)
}

/// Every `splitdns_*` selector in a PromQL expression (string literals and comments skipped).
fn splitdns_selectors(expr: &str) -> Vec<(String, Vec<Matcher>)> {
    let s = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if b"\"'`".contains(&c) {
            i = quoted(s, i).1;
        } else if c == b'#' {
            while i < s.len() && s[i] != b'\n' {
                i += 1;
            }
        } else if is_ident_start(c) && (i == 0 || !is_ident(s[i - 1])) {
            if expr[i..].starts_with("splitdns_") {
                let (name, matchers, next) = selector(expr, i);
                out.push((name, matchers));
                i = next;
            } else {
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Problems with one expression, as messages.
fn check_expr(exported: &Exported, expr: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, matchers) in splitdns_selectors(expr) {
        let Some(labels) = exported.series.get(&name) else {
            problems.push(if exported.histograms.contains(&name) {
                format!("{name} is a histogram: name {name}_bucket, {name}_sum or {name}_count")
            } else {
                format!("{name} is not a metric /metrics serves")
            });
            continue;
        };
        for m in &matchers {
            if TARGET_LABELS.contains(&m.label.as_str())
                || (m.label == "le" && name.ends_with("_bucket"))
            {
                continue;
            }
            let Some(values) = labels.get(&m.label) else {
                problems.push(format!(
                    "{name} has no label {:?} (it has: {:?})",
                    m.label,
                    labels.keys().collect::<Vec<_>>()
                ));
                continue;
            };
            if OPEN_LABELS.contains(&m.label.as_str()) || m.value.contains('$') {
                continue;
            }
            let wanted: Vec<&str> = match m.op.as_str() {
                "=" | "!=" => vec![m.value.as_str()],
                // A plain alternation (a|b|c) names values; other regexes are not checked.
                _ if m.value.bytes().all(|b| is_ident(b) || b == b'|') => {
                    m.value.split('|').collect()
                }
                _ => vec![],
            };
            for v in wanted {
                if !values.contains(v) {
                    problems.push(format!(
                        "{name}{{{}{}{v:?}}}: {v:?} is not a value of {:?} (it has: {values:?})",
                        m.label, m.op, m.label
                    ));
                }
            }
        }
    }
    problems
}

// ---- the files, as far as the expressions go (serde ignores everything else) ----

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
}

#[derive(Deserialize)]
struct PrometheusRule {
    spec: RuleFile,
}

#[derive(Deserialize)]
struct RuleTests {
    tests: Vec<RuleTest>,
}

#[derive(Deserialize)]
struct RuleTest {
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
}

#[derive(Deserialize)]
struct InputSeries {
    series: String,
}

#[derive(Deserialize)]
struct ExprTest {
    expr: String,
}

#[derive(Deserialize)]
struct Dashboard {
    panels: Vec<Panel>,
    templating: Templating,
}

#[derive(Deserialize)]
struct Panel {
    #[serde(default)]
    title: String,
    #[serde(default)]
    targets: Vec<Target>,
    /// A collapsed row keeps its panels inside.
    #[serde(default)]
    panels: Vec<Panel>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(rename = "refId")]
    ref_id: String,
    expr: String,
}

#[derive(Deserialize)]
struct Templating {
    list: Vec<Variable>,
}

#[derive(Deserialize)]
struct Variable {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    query: Option<VariableQuery>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum VariableQuery {
    Query {
        query: String,
    },
    /// Anything else (a `datasource` variable's plugin type, say).
    Other(serde::de::IgnoredAny),
}

fn parse<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    // JSON is YAML (1.2), so one parser reads both.
    serde_saphyr::from_str(&read(name)).unwrap_or_else(|e| panic!("config/monitoring/{name}: {e}"))
}

/// (where, expression) for every expression in config/monitoring/.
fn expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rules = |file: &str, f: RuleFile, out: &mut Vec<(String, String)>| {
        for g in f.groups {
            for r in g.rules {
                let what = r.alert.or(r.record).unwrap_or_default();
                out.push((format!("{file}: group {}: {what}", g.name), r.expr));
            }
        }
    };
    rules(
        "splitdns.rules.yaml",
        parse::<RuleFile>("splitdns.rules.yaml"),
        &mut out,
    );
    rules(
        "prometheusrule.yaml",
        parse::<PrometheusRule>("prometheusrule.yaml").spec,
        &mut out,
    );
    let tests: RuleTests = parse("splitdns.rules.test.yaml");
    for (n, t) in tests.tests.into_iter().enumerate() {
        for s in t.input_series {
            out.push((
                format!("splitdns.rules.test.yaml: test {n}: input series"),
                s.series,
            ));
        }
        for e in t.promql_expr_test {
            out.push((
                format!("splitdns.rules.test.yaml: test {n}: promql_expr_test"),
                e.expr,
            ));
        }
    }
    let dashboard: Dashboard = parse("grafana-dashboard.json");
    fn panels(ps: Vec<Panel>, out: &mut Vec<(String, String)>) {
        for p in ps {
            for t in p.targets {
                out.push((
                    format!(
                        "grafana-dashboard.json: panel {:?} query {}",
                        p.title, t.ref_id
                    ),
                    t.expr,
                ));
            }
            panels(p.panels, out);
        }
    }
    panels(dashboard.panels, &mut out);
    for v in dashboard.templating.list {
        if let (Some(VariableQuery::Query { query }), "query") = (v.query, v.kind.as_str()) {
            out.push((
                format!("grafana-dashboard.json: variable {}", v.name),
                query,
            ));
        }
    }
    out
}

const MAPPING: &str = "hosts:\n  db-0.db.example.com: 10.42.0.12\n";

#[test]
fn rules_and_dashboard_name_only_metrics_the_daemon_serves() {
    let up = upstream::start();
    let d = Daemon::start(MAPPING, vec![up.addr]);
    let text = get_metrics(d.running().admin_addr().expect("admin enabled"));
    let exported = parse_exposition(&text);
    assert!(
        exported.series.contains_key("splitdns_queries_total")
            && exported.histograms.contains("splitdns_forward_seconds"),
        "unexpected /metrics:\n{text}"
    );

    let exprs = expressions();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    let mut files = BTreeMap::<&str, usize>::new();
    for (place, expr) in &exprs {
        *files
            .entry(place.split(':').next().unwrap_or_default())
            .or_default() += 1;
        for (name, _) in splitdns_selectors(expr) {
            used.insert(name);
        }
        for p in check_expr(&exported, expr) {
            problems.push(format!("{place}: {p}\n    in: {}", expr.trim()));
        }
    }
    // Each file must have been read: an empty list would pass vacuously.
    for file in [
        "splitdns.rules.yaml",
        "prometheusrule.yaml",
        "splitdns.rules.test.yaml",
        "grafana-dashboard.json",
    ] {
        assert!(
            files.get(file).copied().unwrap_or(0) > 0,
            "no expressions found in config/monitoring/{file}"
        );
    }
    assert!(
        problems.is_empty(),
        "config/monitoring/ names metrics the daemon does not serve as written:\n{}\n\n/metrics served:\n{text}",
        problems.join("\n")
    );

    // Not a failure, but worth knowing when a metric is added: which series nothing looks at.
    let unused: Vec<&String> = exported
        .series
        .keys()
        .filter(|s| !used.contains(*s))
        .collect();
    if !unused.is_empty() {
        eprintln!("note: no rule or panel uses {unused:?}");
    }
    eprintln!(
        "checked {} expressions ({files:?}) against {} served series",
        exprs.len(),
        exported.series.len()
    );
}

/// The checker itself: it must catch what it exists to catch.
#[test]
fn the_checker_rejects_unknown_names_labels_and_values() {
    let text = "# TYPE splitdns_queries_total counter\n\
        splitdns_queries_total{proto=\"udp\",outcome=\"servfail\"} 0.0\n\
        # TYPE splitdns_forward_seconds histogram\n\
        splitdns_forward_seconds_bucket{le=\"+Inf\"} 0\n\
        splitdns_forward_seconds_sum 0.0\n\
        splitdns_forward_seconds_count 0\n";
    let e = parse_exposition(text);
    let ok = |expr: &str| assert_eq!(check_expr(&e, expr), Vec::<String>::new(), "{expr}");
    let bad = |expr: &str, why: &str| {
        let p = check_expr(&e, expr);
        assert!(p.iter().any(|m| m.contains(why)), "{expr}: {p:?}");
    };
    ok(
        r#"sum without (proto, outcome) (rate(splitdns_queries_total{outcome="servfail", pod=~"$pod"}[5m]))"#,
    );
    ok(
        r#"histogram_quantile(0.99, rate(splitdns_forward_seconds_bucket{le!="0.1"}[5m])) and splitdns_forward_seconds_count"#,
    );
    ok(r#"splitdns_queries_total{outcome=~"servfail"} + on () "splitdns_nope" # splitdns_nope"#);
    bad(
        "rate(splitdns_querys_total[5m])",
        "splitdns_querys_total is not a metric",
    );
    bad("splitdns_forward_seconds", "is a histogram");
    bad(
        r#"splitdns_queries_total{outcome="serv_fail"}"#,
        r#""serv_fail" is not a value"#,
    );
    bad(
        r#"splitdns_queries_total{outcome=~"servfail|timeout"}"#,
        r#""timeout" is not a value"#,
    );
    bad(
        r#"splitdns_queries_total{protocol="udp"}"#,
        r#"no label "protocol""#,
    );
    bad(
        r#"splitdns_forward_seconds_sum{le="0.1"}"#,
        r#"no label "le""#,
    );
}
