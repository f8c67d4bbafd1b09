//! A filtered page (`types`, `senders`, a time range) costs index work proportional to the
//! page, not to the conversation: checked by counting the rows PostgreSQL reads from
//! `messages` for the store's own statements, custom and generic plans alike.

use roaming_client::proto::common::v1::{ConversationType, MessageType};
use roaming_client::proto::history::v1 as hpb;
use roaming_store::sql::{PageFilter, page_statement};
use roaming_testkit::{TestApp, conv, fetch_pages};

/// Messages in the seeded room; 3 of them are IMAGEs from carol, the rest TEXT from bob.
const SIZE: i64 = 20_000;
const IMAGES: [i64; 3] = [5, 10_000, 19_990];
const T0: i64 = 1_700_000_000_000;

/// A chatroom of `SIZE` messages, one a millisecond, written straight into the tables (the
/// bulk load the review used, without the minutes an append per message would take).
async fn seed(app: &TestApp) {
    app.add_members(ConversationType::Group, "room", &["alice", "bob", "carol"])
        .await;
    let sql = app.sql().await;
    sql.execute(
        "INSERT INTO messages (conv_key, seq, sender, recipient, msg_type, body, client_msg_id,
                               server_time_ms)
         SELECT 'g:room', s, CASE WHEN s = ANY($2) THEN 'carol' ELSE 'bob' END, 'room',
                CASE WHEN s = ANY($2) THEN 2 ELSE 1 END, 'x'::bytea, 'c' || s, $3 + s
         FROM generate_series(1, $1::bigint) AS s",
        &[&SIZE, &IMAGES.to_vec(), &T0],
    )
    .await
    .unwrap();
    sql.execute(
        "UPDATE conversations SET last_seq = $1, last_time_ms = $2::bigint + $1::bigint
         WHERE conv_key = 'g:room'",
        &[&SIZE, &T0],
    )
    .await
    .unwrap();
    sql.batch_execute("ANALYZE messages").await.unwrap();
}

/// Rows read from `messages` by one execution of `statement` with these filters for `reader`,
/// under `plan_cache_mode` (custom or generic plans: the server's prepared statements use
/// both).
#[allow(clippy::too_many_arguments)]
async fn rows_read(
    app: &TestApp,
    reader: &str,
    filter: PageFilter,
    plan_cache_mode: &str,
    times: (Option<i64>, Option<i64>),
    senders: &[&str],
    kinds: &[i16],
) -> i64 {
    let sql = app.sql().await;
    sql.batch_execute(&format!(
        "SET plan_cache_mode = {plan_cache_mode};
         PREPARE page(text, bigint, bigint, bigint, bigint, text[], smallint[], text, bigint,
                      boolean)
             AS {}",
        page_statement(true, filter)
    ))
    .await
    .unwrap();
    let lit = |v: Option<i64>| v.map_or("NULL".to_owned(), |t| t.to_string());
    let texts = senders
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(",");
    let numbers = kinds
        .iter()
        .map(i16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let arguments = format!(
        "'g:room', 9223372036854775807, NULL, {}, {}, '{{{texts}}}', '{{{numbers}}}', '{reader}', \
         51, true",
        lit(times.0),
        lit(times.1)
    );
    if roaming_testkit::database::citus().await.is_some() {
        // Citus prints the workers' plans of a prepared statement as text even when asked
        // for JSON (and so answers JSON that does not parse): read the text form.
        let explain = format!("EXPLAIN (ANALYZE, TIMING OFF) EXECUTE page({arguments})");
        let lines: Vec<String> = sql
            .query(&explain, &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        return lines.iter().map(|line| rows_of_messages_node(line)).sum();
    }
    let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE page({arguments})");
    let row = sql.query_one(&explain, &[]).await.unwrap();
    let plan: serde_json::Value = row.get(0);
    fn walk(node: &serde_json::Value) -> i64 {
        let own = if node["Relation Name"] == "messages" {
            node["Actual Rows"].as_i64().unwrap_or(0) * node["Actual Loops"].as_i64().unwrap_or(1)
        } else {
            0
        };
        own + node["Plans"]
            .as_array()
            .map_or(0, |children| children.iter().map(walk).sum())
    }
    walk(&plan[0]["Plan"])
}

/// The plan cache modes a check runs under: custom and generic plans on PostgreSQL (the
/// server's prepared statements use both); custom only on Citus, whose coordinator cannot
/// EXPLAIN a generic plan of these statements ("could not create distributed plan") and which
/// sends each execution to the worker with the parameters' values in the query text, so that
/// the workers plan every page as a custom plan anyway.
async fn plan_cache_modes() -> &'static [&'static str] {
    if roaming_testkit::database::citus().await.is_some() {
        &["force_custom_plan"]
    } else {
        &["force_custom_plan", "force_generic_plan"]
    }
}

/// Rows times loops of a text plan's line when it is a node reading `messages` (on a worker:
/// a shard, `messages_102008`), else 0. `Index Scan using messages_pkey_102008 on
/// messages_102008 m (actual rows=5 loops=1)` counts 5; a bitmap index scan names no table.
fn rows_of_messages_node(line: &str) -> i64 {
    let reads_messages = line.split(" on ").skip(1).any(|rest| {
        let table = rest.split_whitespace().next().unwrap_or("");
        table == "messages"
            || table
                .strip_prefix("messages_")
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
    });
    let number_after = |key: &str| -> Option<i64> {
        let at = line.find(key)? + key.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    match (
        reads_messages,
        number_after("actual rows="),
        number_after(" loops="),
    ) {
        (true, Some(rows), Some(loops)) => rows * loops,
        _ => 0,
    }
}

async fn page(app: &TestApp, request: hpb::FetchHistoryRequest) -> hpb::FetchHistoryResponse {
    let mut pages = fetch_pages(&app.user("alice").await, request)
        .await
        .unwrap();
    assert_eq!(pages.len(), 1);
    pages.remove(0)
}

fn request() -> hpb::FetchHistoryRequest {
    hpb::FetchHistoryRequest {
        conversation: Some(conv(ConversationType::Group, "room")),
        page_size: 50,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_page_of_a_rare_type_reads_rows_in_proportion_to_the_page_not_the_conversation() {
    let app = TestApp::spawn().await;
    seed(&app).await;

    let images = page(
        &app,
        hpb::FetchHistoryRequest {
            types: vec![MessageType::Image as i32],
            ..request()
        },
    )
    .await;
    let seqs: Vec<i64> = images.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [19_990, 10_000, 5]);
    assert!(images.is_end);
    let from_carol = page(
        &app,
        hpb::FetchHistoryRequest {
            senders: vec!["carol".into()],
            ..request()
        },
    )
    .await;
    assert_eq!(from_carol.messages.len(), 3);
    let carol_text = page(
        &app,
        hpb::FetchHistoryRequest {
            senders: vec!["carol".into()],
            types: vec![MessageType::Text as i32],
            ..request()
        },
    )
    .await;
    assert!(carol_text.messages.is_empty() && carol_text.is_end);
    // Far back in time: the page starts at the bound, wherever it lies.
    let old = page(
        &app,
        hpb::FetchHistoryRequest {
            end_time_ms: Some(T0 + 100),
            ..request()
        },
    )
    .await;
    assert_eq!(old.messages[0].seq, 100);
    assert_eq!(old.messages.len(), 50);

    let mut figures = Vec::new();
    for &mode in plan_cache_modes().await {
        let kinds = rows_read(
            &app,
            "alice",
            PageFilter::Kinds,
            mode,
            (None, None),
            &[],
            &[2],
        )
        .await;
        let senders = rows_read(
            &app,
            "alice",
            PageFilter::SendersAndKinds,
            mode,
            (None, None),
            &["carol"],
            &[1, 2, 3, 4, 5, 6, 7, 8],
        )
        .await;
        let rare_pair = rows_read(
            &app,
            "alice",
            PageFilter::SendersAndKinds,
            mode,
            (None, None),
            &["carol"],
            &[1],
        )
        .await;
        let far_back = rows_read(
            &app,
            "alice",
            PageFilter::All,
            mode,
            (None, Some(T0 + 100)),
            &[],
            &[],
        )
        .await;
        let window = rows_read(
            &app,
            "alice",
            PageFilter::All,
            mode,
            (Some(T0 + 9_000), Some(T0 + 9_010)),
            &[],
            &[],
        )
        .await;
        for (what, rows) in [
            ("types=[IMAGE]", kinds),
            ("senders=[carol]", senders),
            ("senders=[carol] types=[TEXT]", rare_pair),
            ("end_time 100 ms after the first", far_back),
            ("an 11 ms window in the middle", window),
        ] {
            // A page of 50 (+1 to know the end) and the two time-bound probes: never the
            // conversation's 20,000 rows.
            assert!(
                rows <= 120,
                "{mode}, {what}: {rows} rows read from messages"
            );
            figures.push(format!("{mode} {what}: {rows}"));
        }
    }
    println!(
        "abuse[filters]: rows read from messages for a page in a {SIZE}-message room: {}",
        figures.join("; ")
    );
}

#[tokio::test]
async fn a_page_refused_to_a_non_member_reads_no_message() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    // The page is one statement with the access check in it: refused, it must not have read
    // the conversation first (the gate is a one-time filter, not a filter on rows read).
    let mut figures = Vec::new();
    for &mode in plan_cache_modes().await {
        for (filter, senders, kinds) in [
            (PageFilter::All, &[][..], &[][..]),
            (PageFilter::Kinds, &[][..], &[2][..]),
            (PageFilter::SendersAndKinds, &["bob"][..], &[1][..]),
        ] {
            let member = rows_read(&app, "alice", filter, mode, (None, None), senders, kinds).await;
            let outsider =
                rows_read(&app, "mallory", filter, mode, (None, None), senders, kinds).await;
            assert!(
                member > 0,
                "{mode} {filter:?}: the member's page read {member} rows"
            );
            assert_eq!(
                outsider, 0,
                "{mode} {filter:?}: the refused page read messages"
            );
            figures.push(format!(
                "{mode} {filter:?}: member {member}, outsider {outsider}"
            ));
        }
    }
    println!(
        "abuse[filters]: rows read from messages: {}",
        figures.join("; ")
    );
}
