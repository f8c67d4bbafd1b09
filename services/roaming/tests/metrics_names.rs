//! Every metric the Grafana dashboard and the alerting rules in `deploy/observability` name is
//! one a running server exports: a server started through the testkit serves some traffic (a
//! refused, a quota-refused, a stalled and an invalid call included), its `/metrics` is
//! scraped, and each metric identifier in the dashboard's and the rules' PromQL must be a
//! sample name of the scrape (histograms by their `_bucket`/`_sum`/`_count` series), with the
//! labels its selectors match on.
//!
//! Its own test binary: the metrics recorder is process-wide, so no other test's calls can
//! add series here, and none of this test's servers can add series to theirs.

use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::conversation::v1::ListConversationsRequest;
use roaming_client::proto::history::v1::{self as hpb, Direction};
use roaming_client::{Client, proto};
use roaming_testkit::{TestApp, assert_status, new_message, peer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// Labels Prometheus attaches to every scraped series (target labels), never the server.
const TARGET_LABELS: &[&str] = &[
    "namespace",
    "pod",
    "instance",
    "job",
    "container",
    "service",
];

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_name_is_exported() {
    let app = TestApp::spawn_with(|c| {
        c.protection.max_concurrent_calls = 2;
        c.protection.max_calls_per_user = 1;
        // The held streams below must stay held: nothing here waits anywhere near this long.
        c.protection.stream_stall_timeout = Duration::from_secs(600).into();
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = listener.local_addr().unwrap();
    tokio::spawn(roaming::serve_metrics(
        listener,
        app.store.clone(),
        std::future::pending(),
    ));

    // Appends (one of them a duplicate), a fetch, a list, an invalid call.
    app.peer("alice", "carol", "hi").await;
    let service = app.service().await;
    let again = new_message(ConversationType::Peer, "alice", "carol", "hi", "dup-1");
    for _ in 0..2 {
        service
            .history()
            .append_messages(hpb::AppendMessagesRequest {
                messages: vec![again.clone()],
            })
            .await
            .unwrap();
    }
    app.fetch_all("alice", peer("carol"), Direction::Forward)
        .await;
    app.user("alice")
        .await
        .conversations()
        .list_conversations(ListConversationsRequest::default())
        .await
        .unwrap();
    let invalid = app
        .user("alice")
        .await
        .history()
        .fetch_history(hpb::FetchHistoryRequest {
            conversation: Some(peer("")),
            ..Default::default()
        })
        .await;
    assert_eq!(invalid.unwrap_err().code(), Code::InvalidArgument);

    // Refusals: alice holds one stream (her whole per-user quota), so her next call is refused
    // by the quota; bob holds a second (the whole concurrency limit), so carol's is shed.
    // (The conversations first: with both slots held, the server takes no append either.)
    store_heavy(&app, "alice", "bob").await;
    store_heavy(&app, "dave", "erin").await;
    let alice = hold_stream(&app.user("alice").await, "bob").await;
    let refused = list(&app.user("alice").await).await;
    assert_status(refused, Code::ResourceExhausted, "calls in progress");
    let bob = hold_stream(&app.user("bob").await, "alice").await;
    let shed = list(&app.user("carol").await).await;
    assert_status(shed, Code::ResourceExhausted, "concurrency limit");

    // A stalled stream, on a second server over the same database whose stall timeout is short:
    // its reader takes the first page, then nothing.
    let mut config = app.config.clone();
    config.protection.stream_stall_timeout = Duration::from_millis(100).into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalling = app.serve_also(config, listener);
    let client = Client::builder(stalling.endpoint.clone())
        .token(app.token("dave", false))
        .connect()
        .await
        .unwrap();
    let stalled = hold_stream(&client, "erin").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let body = http_get(metrics, "/metrics").await;
        if body.contains("roaming_grpc_stalled_total{") {
            break body;
        }
        assert!(Instant::now() < deadline, "no stall recorded:\n{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop((alice, bob, stalled));

    let exported = parse_scrape(&body);
    let mut named = 0;
    for (file, exprs) in [
        ("grafana-dashboard.json", dashboard_exprs()),
        ("roaming.rules.yaml", rules_exprs("roaming.rules.yaml")),
        ("prometheus-rule.yaml", rules_exprs("prometheus-rule.yaml")),
    ] {
        assert!(!exprs.is_empty(), "{file}: no expressions found");
        for expr in &exprs {
            let selectors = metric_selectors(expr);
            assert!(!selectors.is_empty(), "{file}: `{expr}` names no metric");
            for (metric, labels) in selectors {
                named += 1;
                let Some(have) = exported.get(&metric) else {
                    panic!("{file}: `{expr}` names {metric}, which the server does not export");
                };
                for label in labels {
                    assert!(
                        have.contains(&label) || TARGET_LABELS.contains(&label.as_str()),
                        "{file}: `{expr}` matches {metric} on label {label}, which it lacks \
                         (it has {have:?})"
                    );
                }
            }
        }
    }
    assert!(named > 20, "only {named} metric references found");
}

async fn list(
    client: &Client,
) -> Result<tonic::Response<proto::conversation::v1::ListConversationsResponse>, tonic::Status> {
    client
        .conversations()
        .list_conversations(ListConversationsRequest::default())
        .await
}

/// Stores 60 messages of 60 KiB, so that a stream of one-message pages cannot fit in the
/// transport's flow-control window and stays open while nobody reads it.
async fn store_heavy(app: &TestApp, sender: &str, recipient: &str) {
    let service = app.service().await;
    for chunk in (0..60).collect::<Vec<_>>().chunks(10) {
        let messages = chunk
            .iter()
            .map(|i| {
                let id = format!("heavy-{sender}-{i}");
                let mut m = new_message(ConversationType::Peer, sender, recipient, "", &id);
                m.body = vec![b'x'; 60 * 1024];
                m
            })
            .collect();
        service
            .history()
            .append_messages(hpb::AppendMessagesRequest { messages })
            .await
            .unwrap();
    }
}

/// Opens a FetchHistory stream of one-message pages with `other` and reads its first page.
async fn hold_stream(client: &Client, other: &str) -> tonic::Streaming<hpb::FetchHistoryResponse> {
    let mut stream = client
        .history()
        .fetch_history(hpb::FetchHistoryRequest {
            conversation: Some(peer(other)),
            page_size: 1,
            max_pages: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    stream
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// Sample name → the label names its samples carry, from a Prometheus text exposition.
fn parse_scrape(body: &str) -> BTreeMap<String, BTreeSet<String>> {
    let text = body.split_once("\r\n\r\n").map_or(body, |(_, b)| b);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_owned()).or_default();
        if let Some(rest) = line[end..].strip_prefix('{') {
            let inner = &rest[..rest.rfind('}').expect("closed label set")];
            for pair in split_label_pairs(inner) {
                if let Some((name, _)) = pair.split_once('=') {
                    labels.insert(name.trim().to_owned());
                }
            }
        }
    }
    out
}

/// `a="x",b="y,z"` → `a="x"`, `b="y,z"` (commas inside quoted values kept).
fn split_label_pairs(inner: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&inner[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn observability(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/observability")
        .join(file)
}

/// Every panel target's `expr`, and each query variable's `label_values(<selector>, <label>)`
/// selector.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(observability("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    collect_exprs(&dashboard["panels"], &mut out);
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            let query = var["query"]["query"].as_str().or(var["query"].as_str());
            let query = query.expect("a query variable has a query");
            let args = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable query `{query}` is not label_values(..)"));
            let (selector, _label) = args
                .rsplit_once(',')
                .expect("label_values(selector, label)");
            out.push(selector.trim().to_owned());
        }
    }
    out
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v.as_str()) {
                    ("expr", Some(expr)) => out.push(expr.to_owned()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The `expr` values of a rules file: `expr: <one line>` or an `expr: |` / `expr: >` block
/// (the two styles the files use; .ci/deploy-check parses them as YAML, promtool as rules).
fn rules_exprs(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(observability(file)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            out.push(block.join(" ").trim().to_owned());
        } else {
            out.push(value.trim_matches(|c| c == '"' || c == '\'').to_owned());
        }
    }
    out
}

/// PromQL words that are not metric names when they stand without a `(` after them.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Words followed by a parenthesised list of label names, not of expressions.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names an expression selects, each with the label names its `{..}` matches on.
/// Strings, `[..]` ranges, Grafana `$variables`, numbers and durations, function and
/// aggregation names and grouping label lists are skipped.
fn metric_selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut i = 0;
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '[' {
            i = skip_to(&chars, i, ']');
        } else if c == '{' {
            // A selector without a name before it (`{__name__=..}`) would be missed: refuse it.
            panic!("`{expr}`: a selector without a metric name");
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            i += 1;
            while i < chars.len() && (is_part(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_start(c) {
            let start = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let next = chars.get(j).copied();
            if GROUPING.contains(&word.as_str()) && next == Some('(') {
                i = skip_to(&chars, j, ')');
            } else if next == Some('(') || KEYWORDS.contains(&word.as_str()) {
                // A function or an aggregation; its arguments are scanned as they come.
            } else {
                let mut labels = Vec::new();
                if next == Some('{') {
                    let end = skip_to(&chars, j, '}');
                    let inner: String = chars[j + 1..end - 1].iter().collect();
                    for matcher in split_label_pairs(&inner) {
                        let name = matcher
                            .split(['=', '!'])
                            .next()
                            .expect("a label matcher")
                            .trim();
                        labels.push(name.to_owned());
                    }
                    i = end;
                }
                out.push((word, labels));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The index after the string literal starting at `i`.
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        if chars[j] == '\\' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// The index after the `close` that ends the bracket opened at `i` (strings inside skipped).
fn skip_to(chars: &[char], i: usize, close: char) -> usize {
    let mut j = i + 1;
    while j < chars.len() && chars[j] != close {
        if chars[j] == '"' || chars[j] == '\'' || chars[j] == '`' {
            j = skip_string(chars, j);
        } else {
            j += 1;
        }
    }
    j + 1
}

#[test]
fn the_promql_reader_finds_metrics_and_their_matched_labels_only() {
    let found = metric_selectors(
        r#"histogram_quantile(0.99, sum by (method, le) (rate(a_bucket{method!~"X|Y", code="}"}[$__rate_interval])))
           / on (pod) group_left b > bool 0 and max without (x) (c offset 5m) - 1e3"#,
    );
    let expected = [
        ("a_bucket", vec!["method", "code"]),
        ("b", vec![]),
        ("c", vec![]),
    ];
    let expected: Vec<(String, Vec<String>)> = expected
        .into_iter()
        .map(|(m, l)| (m.to_owned(), l.into_iter().map(str::to_owned).collect()))
        .collect();
    assert_eq!(found, expected);
}
