//! The bulk loader: binary `COPY` straight into the schema, no RPCs.
//!
//! Messages are emitted in global server-time order (a k-way merge over every conversation of
//! the generation), so rows of different conversations interleave in the heap the way live
//! traffic leaves them, and `msg_id`s rise with time across conversations as the sequence
//! would have handed them out. Invariants kept: per-conversation seq 1..=n without gaps,
//! `server_time_ms` non-decreasing in seq, `conversations.last_seq` / `last_time_ms` equal to
//! the last message's, both PEER participants (and every group member) in
//! `user_conversations`, explicit `msg_id`s above the sequence's value and `setval` after.

use crate::shape::{ConvPlan, Generation};
use anyhow::Context as _;
use futures::pin_mut;
use indicatif::{ProgressBar, ProgressStyle};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

const CHUNK: usize = 8192;

/// A chunk of consecutive messages: `msg_id`s from `first_id`, one `(conversation, k)` each.
struct Chunk {
    first_id: i64,
    rows: Vec<(u32, u64)>,
}

/// What loading one generation took.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadReport {
    /// Messages written.
    pub messages: u64,
    /// Conversations written.
    pub conversations: usize,
    /// `user_conversations` rows written.
    pub user_conversations: usize,
    /// Tombstones written.
    pub tombstones: usize,
    /// Seconds spent in COPY (all four tables).
    pub copy_secs: f64,
    /// Seconds spent in VACUUM ANALYZE + CHECKPOINT afterwards.
    pub vacuum_secs: f64,
    /// Messages per second: the messages COPY and, for big stages, rebuilding its indexes.
    pub messages_per_sec: f64,
    /// Whether the indexes of `messages` were dropped during COPY and rebuilt after.
    pub rebuilt_indexes: bool,
}

/// A cheap deterministic mix (splitmix64), so a row's details follow from its id.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Printable filler that bodies are sliced from.
pub fn body_pool() -> Arc<Vec<u8>> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,!?0123456789";
    Arc::new(
        (0..65_536u64)
            .map(|i| ALPHABET[(mix(i) % ALPHABET.len() as u64) as usize])
            .collect(),
    )
}

/// The per-row details that follow from the id: (sender member index, type, body range,
/// attributes choice).
fn details(conv: &ConvPlan, msg_id: i64, pool_len: usize) -> (u32, i16, usize, usize, bool) {
    let h = mix(msg_id as u64);
    let sender = conv.members[(h % conv.members.len() as u64) as usize];
    let kind = match (h >> 8) % 100 {
        0..=84 => 1,  // TEXT
        85..=94 => 2, // IMAGE
        _ => 7,       // CUSTOM
    };
    let len = 16 + ((h >> 16) % 225) as usize;
    let off = ((h >> 24) % (pool_len - 256) as u64) as usize;
    let with_attrs = (h >> 40) % 10 == 0;
    (sender, kind, off, len, with_attrs)
}

/// A direct connection, with the URL's TLS as the server opens its own.
async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    Ok(roaming_store::db::connect(&roaming_store::db::parse_url(url)?).await?)
}

/// From this many messages in one stage, indexes are dropped during COPY and rebuilt after.
const REBUILD_FROM: u64 = 200_000;

/// Drops the constraints and indexes of `messages`; returns the statements that restore them.
async fn drop_message_indexes(admin: &tokio_postgres::Client) -> anyhow::Result<Vec<String>> {
    let constraints = admin
        .query(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = 'messages'::regclass AND contype IN ('p', 'u') ORDER BY contype, conname",
            &[],
        )
        .await?;
    let indexes = admin
        .query(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = 'messages'::regclass \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
             ORDER BY c.relname",
            &[],
        )
        .await?;
    let mut restore = Vec::new();
    for row in &constraints {
        let (name, def): (String, String) = (row.get(0), row.get(1));
        let name = roaming_store::db::quote_ident(&name);
        admin
            .batch_execute(&format!("ALTER TABLE messages DROP CONSTRAINT {name}"))
            .await?;
        restore.push(format!("ALTER TABLE messages ADD CONSTRAINT {name} {def}"));
    }
    for row in &indexes {
        let (name, def): (String, String) = (row.get(0), row.get(1));
        admin
            .batch_execute(&format!(
                "DROP INDEX {}",
                roaming_store::db::quote_ident(&name)
            ))
            .await?;
        restore.push(def);
    }
    Ok(restore)
}

/// Loads `generation` into the database at `url` through `writers` parallel COPY streams.
pub async fn load(
    url: &str,
    generation: Arc<Generation>,
    writers: usize,
    show_progress: bool,
) -> anyhow::Result<LoadReport> {
    let started = Instant::now();
    let admin = connect(url).await?;
    let g = &generation;

    // Conversations, participants and tombstones first: small, one COPY each.
    let conv_rows = g.convs.len();
    {
        let sink = admin
            .copy_in(
                "COPY conversations (conv_key, kind, last_seq, last_time_ms) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let w = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::INT2, Type::INT8, Type::INT8]);
        pin_mut!(w);
        for c in &g.convs {
            let last_seq = c.messages as i64;
            w.as_mut()
                .write(&[&c.key, &c.kind, &last_seq, &c.end_ms])
                .await?;
        }
        w.finish().await?;
    }
    let mut uc_rows = 0;
    {
        let sink = admin
            .copy_in("COPY user_conversations (conv_key, user_id, kind) FROM STDIN (FORMAT binary)")
            .await?;
        let w = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::INT2]);
        pin_mut!(w);
        for c in &g.convs {
            for &m in &c.members {
                w.as_mut().write(&[&c.key, &g.user(m), &c.kind]).await?;
                uc_rows += 1;
            }
        }
        w.finish().await?;
    }
    {
        let sink = admin
            .copy_in("COPY tombstones (conv_key, user_id, seq) FROM STDIN (FORMAT binary)")
            .await?;
        let w = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::INT8]);
        pin_mut!(w);
        for &(c, u, seq) in &g.tombstones {
            w.as_mut()
                .write(&[&g.convs[c as usize].key, &g.user(u), &seq])
                .await?;
        }
        w.finish().await?;
    }

    // Message ids: explicit values above the sequence, then setval.
    let base: i64 = admin
        .query_one("SELECT nextval('message_ids')", &[])
        .await?
        .get(0);
    let total = g.total_messages;

    let progress = if show_progress {
        let pb = ProgressBar::new(total);
        pb.set_style(
            ProgressStyle::with_template(
                "{msg} [{elapsed_precise}] [{wide_bar}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.set_message(format!("loading generation {}", g.index));
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    } else {
        ProgressBar::hidden()
    };

    // The merge runs on a blocking thread; writers take chunks round-robin from one channel.
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(writers * 4);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let merge_gen = generation.clone();
    let merge = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let g = merge_gen;
        let mut heap: BinaryHeap<Reverse<(i64, u32)>> = BinaryHeap::with_capacity(g.convs.len());
        let mut next: Vec<u64> = vec![0; g.convs.len()];
        for (i, c) in g.convs.iter().enumerate() {
            if c.messages > 0 {
                heap.push(Reverse((c.time_of(0), i as u32)));
            }
        }
        let mut id = base;
        let mut chunk = Chunk {
            first_id: id,
            rows: Vec::with_capacity(CHUNK),
        };
        while let Some(Reverse((_, c))) = heap.pop() {
            let conv = &g.convs[c as usize];
            let k = next[c as usize];
            chunk.rows.push((c, k));
            id += 1;
            next[c as usize] = k + 1;
            if k + 1 < conv.messages {
                heap.push(Reverse((conv.time_of(k + 1), c)));
            }
            if chunk.rows.len() == CHUNK {
                let full = std::mem::replace(
                    &mut chunk,
                    Chunk {
                        first_id: id,
                        rows: Vec::with_capacity(CHUNK),
                    },
                );
                if tx.blocking_send(full).is_err() {
                    anyhow::bail!("the COPY writers stopped");
                }
            }
        }
        if !chunk.rows.is_empty() && tx.blocking_send(chunk).is_err() {
            anyhow::bail!("the COPY writers stopped");
        }
        Ok(())
    });

    // Big stages: COPY into the bare heap, then build the indexes by sorting (and check the
    // keys' uniqueness on the way) — much faster than maintaining four B-trees row by row
    // under random (time-ordered, conversation-interleaved) inserts. The definitions are read
    // from the catalog and re-applied unchanged, so the schema is exactly the migrations'.
    let rebuild = if total >= REBUILD_FROM {
        Some(drop_message_indexes(&admin).await?)
    } else {
        None
    };

    let copy_started = Instant::now();
    let pool = body_pool();
    let mut tasks = Vec::new();
    for _ in 0..writers.max(1) {
        let rx = rx.clone();
        let g = generation.clone();
        let url = url.to_owned();
        let pool = pool.clone();
        let pb = progress.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect(&url).await?;
            let sink = client
                .copy_in(
                    "COPY messages (conv_key, seq, msg_id, sender, recipient, msg_type, body, \
                     attributes, client_msg_id, server_time_ms) FROM STDIN (FORMAT binary)",
                )
                .await?;
            let w = BinaryCopyInWriter::new(
                sink,
                &[
                    Type::TEXT,
                    Type::INT8,
                    Type::INT8,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT2,
                    Type::BYTEA,
                    Type::JSONB,
                    Type::TEXT,
                    Type::INT8,
                ],
            );
            pin_mut!(w);
            let empty = serde_json::json!({});
            let with_ext = serde_json::json!({"ext": "bench"});
            loop {
                let Some(chunk) = rx.lock().await.recv().await else {
                    break;
                };
                for (n, &(c, k)) in chunk.rows.iter().enumerate() {
                    let conv = &g.convs[c as usize];
                    let msg_id = chunk.first_id + n as i64;
                    let (sender, kind, off, len, attrs) = details(conv, msg_id, pool.len());
                    let recipient: &str = if conv.kind == 1 {
                        let other = if conv.members[0] == sender {
                            conv.members[1]
                        } else {
                            conv.members[0]
                        };
                        g.user(other)
                    } else {
                        conv.group_id()
                    };
                    let seq = k as i64 + 1;
                    let time = conv.time_of(k);
                    let client_msg_id = format!("m{msg_id}");
                    let attributes = if attrs { &with_ext } else { &empty };
                    let values: [&(dyn ToSql + Sync); 10] = [
                        &conv.key,
                        &seq,
                        &msg_id,
                        &g.user(sender),
                        &recipient,
                        &kind,
                        &&pool[off..off + len],
                        attributes,
                        &client_msg_id,
                        &time,
                    ];
                    w.as_mut().write(&values).await?;
                }
                pb.inc(chunk.rows.len() as u64);
            }
            w.finish().await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("COPY writer panicked")??;
    }
    merge.await.context("merge panicked")??;
    progress.finish_and_clear();
    if let Some(definitions) = rebuild {
        let started = Instant::now();
        admin
            .batch_execute(
                "SET maintenance_work_mem = '1GB'; SET max_parallel_maintenance_workers = 2",
            )
            .await?;
        for sql in &definitions {
            admin
                .batch_execute(sql)
                .await
                .with_context(|| format!("rebuilding: {sql}"))?;
        }
        if show_progress {
            eprintln!(
                "  rebuilt {} indexes of messages in {:.1} s",
                definitions.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let copy_messages_secs = copy_started.elapsed().as_secs_f64();

    let last_id = base + total as i64 - 1;
    admin
        .query_one("SELECT setval('message_ids', $1)", &[&last_id.max(base)])
        .await?;
    let copy_secs = started.elapsed().as_secs_f64();

    // Statistics and the visibility map, as autovacuum would leave them; then a checkpoint so
    // the scenarios do not pay for the load's dirty pages.
    let vacuum_started = Instant::now();
    admin
        .batch_execute("VACUUM (ANALYZE) conversations, user_conversations, tombstones, messages")
        .await?;
    admin.batch_execute("CHECKPOINT").await?;
    Ok(LoadReport {
        messages: total,
        conversations: conv_rows,
        user_conversations: uc_rows,
        tombstones: g.tombstones.len(),
        copy_secs,
        vacuum_secs: vacuum_started.elapsed().as_secs_f64(),
        messages_per_sec: total as f64 / copy_messages_secs.max(1e-9),
        rebuilt_indexes: total >= REBUILD_FROM,
    })
}
