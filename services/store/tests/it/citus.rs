//! Distribution: what `roaming migrate` does on a Citus cluster (and does not do on plain
//! PostgreSQL), and how Citus runs every statement of `roaming_store::sql` there.
//!
//! Both tests run on whichever database the testkit points at; on a Citus coordinator
//! (`ROAMING_TEST_DATABASE_URL`) they check the distributed side, on PostgreSQL the plain one.

use crate::support::{TestDb, triples};
use roaming_store::sql::{self, Layout, PageFilter};
use roaming_store::{citus, migrate};
use tokio_postgres::Client;

#[tokio::test]
async fn migrating_distributes_every_table_on_citus_once_and_nothing_on_postgresql() {
    let db = TestDb::create().await;
    let mut client = db.connect().await;
    migrate::run(&mut client).await.unwrap();
    let layout = citus::layout(&client).await.unwrap();
    match roaming_testkit::database::citus().await {
        None => {
            assert_eq!(layout, Layout::Single);
            assert_eq!(citus::distribute(&client).await.unwrap(), 0);
        }
        Some(_) => {
            assert_eq!(layout, Layout::Citus);
            let before = distribution(&client).await;
            let tables: Vec<&str> = before.iter().map(|(t, _, _)| t.as_str()).collect();
            let mut expected = citus::TABLES.to_vec();
            expected.sort_unstable();
            assert_eq!(tables, expected, "every table is distributed");
            for (table, column, group) in &before {
                assert_eq!(column, citus::DISTRIBUTION_COLUMN, "{table}");
                assert_eq!(*group, before[0].2, "{table} is co-located with the others");
            }
            // Every replica runs it at start: the second run finds nothing to do.
            assert_eq!(migrate::run(&mut client).await.unwrap(), 0);
            assert_eq!(citus::distribute(&client).await.unwrap(), 0);
            assert_eq!(distribution(&client).await, before);
        }
    }
}

/// `(table, distribution column, co-location group)` of every distributed table, by name.
async fn distribution(client: &Client) -> Vec<(String, String, i32)> {
    triples(
        client,
        "SELECT logicalrelid::regclass::text, column_to_column_name(logicalrelid, partkey),
                colocationid
         FROM pg_dist_partition ORDER BY 1",
    )
    .await
}

/// How a statement may run on Citus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    /// On the one shard of the conversation it names (the feed's `REMOVED_SINCE` and
    /// `CHANGED_MESSAGES`: of each conversation it names): every job has one task.
    Router,
    /// On every shard (the caller's rows are spread over all of them): the list and the feed.
    AllShards,
    /// An `INSERT ... SELECT` whose rows Citus computes on the coordinator (from parameters,
    /// or from one shard) and then inserts into the conversation's one shard.
    ViaCoordinator,
    /// On the coordinator alone: it reads no distributed table.
    Local,
}

#[tokio::test]
async fn every_per_request_statement_plans_with_its_parameters_and_on_citus_on_the_shards_it_must()
{
    let db = TestDb::create().await;
    let mut client = db.connect().await;
    migrate::run(&mut client).await.unwrap();
    let layout = citus::layout(&client).await.unwrap();
    // Each statement with its parameters as typed literals: Citus plans (and EXPLAINs) a
    // statement with the values in it as it does a bound one, and EXPLAIN with bound
    // parameters is not supported for every shape there (INSERT ... SELECT).
    const PEER: &str = "'p:alice:bob'::text";
    const GROUP: &str = "'g:room'::text";
    const ALICE: &str = "'alice'::text";
    const SNAPSHOT: &str = "'1:1:'::text";
    const NO_SEQ: &str = "NULL::bigint";
    const MAX: &str = "9223372036854775807::bigint";
    const USERS: &str = "'{alice}'::text[]";
    const TEXTS: &str = "'{}'::text[]";
    let list = [
        ALICE,
        "'{1,2}'::smallint[]",
        "0::bigint",
        MAX,
        "''::text",
        "11::bigint",
        "''::text",
        "999::bigint",
    ];
    let sync = [
        ALICE,
        SNAPSHOT,
        MAX,
        "''::text",
        "51::bigint",
        "999::bigint",
    ];
    let page = [
        PEER,
        "0::bigint",
        NO_SEQ,
        NO_SEQ,
        NO_SEQ,
        USERS,
        "'{1}'::smallint[]",
        ALICE,
        "51::bigint",
        "false",
    ];

    let mut cases: Vec<(&str, &str, Vec<&str>, Expected)> = Vec::new();
    for (name, backward, filter) in [
        ("PAGE_FORWARD", false, PageFilter::All),
        ("PAGE_BACKWARD", true, PageFilter::All),
        ("PAGE_FORWARD_KINDS", false, PageFilter::Kinds),
        ("PAGE_BACKWARD_KINDS", true, PageFilter::Kinds),
        ("PAGE_FORWARD_SENDERS", false, PageFilter::SendersAndKinds),
        ("PAGE_BACKWARD_SENDERS", true, PageFilter::SendersAndKinds),
    ] {
        let text = sql::page_statement(backward, filter);
        cases.push((name, text, page.to_vec(), Expected::Router));
    }
    cases.extend([
        (
            "LIST",
            sql::list_statement(layout, false),
            list.to_vec(),
            Expected::AllShards,
        ),
        (
            "LIST_PINNED",
            sql::list_statement(layout, true),
            list.to_vec(),
            Expected::AllShards,
        ),
        (
            "SYNC_SNAPSHOT",
            sql::sync_statement(layout, false),
            sync.to_vec(),
            Expected::AllShards,
        ),
        (
            "SYNC_DELTA",
            sql::sync_statement(layout, true),
            sync.to_vec(),
            Expected::AllShards,
        ),
        (
            "PINNED_OTHERS",
            sql::PINNED_OTHERS,
            vec![ALICE, PEER],
            Expected::AllShards,
        ),
        ("LOCK_PINS", sql::LOCK_PINS, vec![ALICE], Expected::Local),
    ]);
    let router: Vec<(&str, &str, Vec<&str>)> = vec![
        ("VIEW", sql::VIEW, vec![PEER, ALICE]),
        ("MEMBERS", sql::MEMBERS, vec![GROUP, USERS]),
        ("LOCK", sql::LOCK, vec![PEER]),
        ("EXISTING", &sql::EXISTING, vec![PEER, USERS, TEXTS]),
        (
            "BUMP_INSERT",
            sql::BUMP_INSERT,
            vec![
                PEER,
                "1::bigint",
                "1::bigint",
                "'{1}'::bigint[]",
                USERS,
                "'{bob}'::text[]",
                "'{1}'::smallint[]",
                "'{\"\\\\x00\"}'::bytea[]",
                "'{\"{}\"}'::jsonb[]",
                "'{c1}'::text[]",
                "true",
            ],
        ),
        (
            "APPEND_ONE",
            sql::APPEND_ONE,
            vec![
                PEER,
                "1::bigint",
                "true",
                ALICE,
                "'bob'::text",
                "1::smallint",
                "'\\x00'::bytea",
                "'{}'::jsonb",
                "'c1'::text",
            ],
        ),
        (
            "CREATE_CONVERSATION",
            sql::CREATE_CONVERSATION,
            vec![PEER, "1::smallint"],
        ),
        (
            "ADD_PARTICIPANTS",
            sql::ADD_PARTICIPANTS,
            vec![GROUP, USERS, "2::smallint"],
        ),
        ("REMOVE_MEMBERS", sql::REMOVE_MEMBERS, vec![GROUP, USERS]),
        (
            "SEQS_OF_IDS",
            sql::SEQS_OF_IDS,
            vec![PEER, "'{1}'::bigint[]"],
        ),
        (
            "TOMBSTONE",
            sql::TOMBSTONE,
            vec![PEER, ALICE, "'{1}'::bigint[]"],
        ),
        (
            "HIDE_BEFORE_TIME",
            sql::HIDE_BEFORE_TIME,
            vec![PEER, ALICE, "1::bigint"],
        ),
        (
            "REMOVE_FOR_ME",
            sql::REMOVE_FOR_ME,
            vec![PEER, ALICE, "false"],
        ),
        ("PURGE", sql::PURGE, vec![PEER, "true"]),
        (
            "REMOVED_SINCE",
            sql::REMOVED_SINCE,
            vec!["'{p:alice:bob}'::text[]", ALICE, SNAPSHOT],
        ),
        (
            "DIGEST",
            sql::DIGEST,
            vec![
                PEER,
                "1::bigint",
                "100::bigint",
                "10::bigint",
                "0::bigint",
                ALICE,
            ],
        ),
        (
            "MARK_READ_PEER",
            &sql::MARK_READ_PEER,
            vec![PEER, ALICE, NO_SEQ, "false", "999::bigint"],
        ),
        (
            "MARK_READ_GROUP",
            &sql::MARK_READ_GROUP,
            vec![GROUP, ALICE, NO_SEQ, "true", "999::bigint"],
        ),
        ("PINNED_AT", sql::PINNED_AT, vec![PEER, ALICE]),
        ("PIN", sql::PIN, vec![PEER, ALICE, "1::bigint"]),
        (
            "MARK",
            sql::MARK,
            vec![PEER, ALICE, "'{work}'::text[]", TEXTS, "20::bigint"],
        ),
        (
            "RECALL",
            &sql::RECALL,
            vec![
                PEER,
                ALICE,
                "1::bigint",
                "false",
                "1::bigint",
                "120000::bigint",
            ],
        ),
        (
            "EDIT",
            &sql::EDIT,
            vec![
                PEER,
                ALICE,
                "1::bigint",
                "false",
                "'\\x00'::bytea",
                "'{}'::jsonb",
                "1::bigint",
                "10::integer",
            ],
        ),
        (
            "CHANGED_MESSAGES",
            &sql::CHANGED_MESSAGES,
            vec!["'{p:alice:bob}'::text[]", ALICE, SNAPSHOT],
        ),
    ];
    for (name, text, args) in router {
        let expected = match name {
            "BUMP_INSERT" | "APPEND_ONE" | "ADD_PARTICIPANTS" | "TOMBSTONE" => {
                Expected::ViaCoordinator
            }
            _ => Expected::Router,
        };
        cases.push((name, text, args, expected));
    }

    let citus = roaming_testkit::database::citus().await.is_some();
    let (mut report, mut wrong) = (Vec::new(), Vec::new());
    for (name, text, args, expected) in cases {
        // EXPLAIN plans without running anything.
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN {}", with_literals(text, &args)), &[])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !citus {
            assert!(!plan.is_empty(), "{name}");
            continue;
        }
        let tasks: Vec<u32> = plan
            .iter()
            .filter_map(|line| line.trim().strip_prefix("Task Count: "))
            .map(|n| n.parse().unwrap())
            .collect();
        let method = plan
            .iter()
            .find_map(|line| line.trim().strip_prefix("INSERT/SELECT method: "))
            .map(|m| format!(", INSERT/SELECT {m}"))
            .unwrap_or_default();
        let pulled = method.contains("pull to coordinator");
        let holds = match expected {
            Expected::Router => !pulled && !tasks.is_empty() && tasks.iter().all(|&n| n == 1),
            Expected::ViaCoordinator => pulled && tasks.iter().all(|&n| n == 1),
            Expected::AllShards => tasks.len() == 1 && tasks[0] > 1,
            Expected::Local => tasks.is_empty(),
        };
        if !holds {
            wrong.push(format!("{name}: expected {expected:?}, planned {plan:#?}"));
        }
        report.push(format!("{name}: {expected:?}, tasks {tasks:?}{method}"));
    }
    if citus {
        println!("citus plans:\n{}", report.join("\n"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `text` with `$1`, `$2`, ... replaced by `args` (from the highest number down, so that
/// `$1` never eats the start of `$10`).
fn with_literals(text: &str, args: &[&str]) -> String {
    let mut out = text.to_owned();
    for (i, arg) in args.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), &format!("({arg})"));
    }
    assert!(!out.contains("$1"), "a parameter without a value: {out}");
    out
}
