//! Item 1: PostgreSQL restarted (`-m fast`) and crashed (`-m immediate`) under append load.
//!
//! Writers append small batches to a few shared PEER conversations and retry every failed
//! batch with the same `client_msg_id`s until it is acknowledged. PostgreSQL goes down twice
//! while they write. Afterwards everything is read back through the service and checked:
//! every acknowledged message is there with the `msg_id` and `seq` it was acknowledged with,
//! no `client_msg_id` is stored twice, seqs are gapless. A fixed set of messages acknowledged
//! before the first restart is sent again after each restart: every retry must come back as
//! a duplicate carrying the original `msg_id` and `seq`.

use super::pg::{OwnPg, StopMode};
use super::support::*;
use roaming_client::proto::history::v1 as hpb;
use roaming_testkit::peer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONVERSATIONS: usize = 4;

fn sender(c: usize) -> String {
    format!("a{c}")
}

fn recipient(c: usize) -> String {
    format!("b{c}")
}

/// What the writers saw.
#[derive(Default)]
struct Ledger {
    /// `client_msg_id` → `(msg_id, seq)` of its first acknowledgement.
    acked: HashMap<String, (String, i64)>,
    /// Errors by code.
    codes: Codes,
    /// When each acknowledged call returned.
    successes: Vec<Instant>,
    /// Acknowledged as duplicates on their first acknowledgement: attempts whose outcome the
    /// client never learned (the commit happened, the answer was lost), found by the retry.
    resolved_unknown: usize,
    /// Retries (calls after a failed attempt of the same batch).
    retries: usize,
}

/// Sends `batch` until it is acknowledged, retrying with the same ids after a retryable
/// error. Returns the results; records errors (and panics on a non-retryable one).
async fn append_until_acked(
    callers: &mut Callers,
    batch: &[hpb::NewMessage],
    ledger: &Mutex<Ledger>,
) -> Vec<hpb::AppendResult> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match callers.append(batch.to_vec(), Some(CALL_DEADLINE)).await {
            Ok(response) => {
                let mut l = ledger.lock().unwrap();
                l.successes.push(Instant::now());
                l.retries += attempts - 1;
                return response.results;
            }
            Err(status) => {
                ledger.lock().unwrap().codes.add(&status);
                assert!(
                    retryable(&status),
                    "append failed with a non-retryable {:?}: {}",
                    status.code(),
                    status.message()
                );
                assert!(attempts < 2_000, "a batch was never acknowledged");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

async fn writer(w: usize, mut callers: Callers, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let c = w % CONVERSATIONS;
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let size = 1 + (i % 3);
        let batch: Vec<hpb::NewMessage> = (0..size)
            .map(|k| {
                let id = format!("w{w}-{}", i + k);
                text(&sender(c), &recipient(c), &id, &id)
            })
            .collect();
        i += size;
        let results = append_until_acked(&mut callers, &batch, &ledger).await;
        let mut l = ledger.lock().unwrap();
        for (m, r) in batch.iter().zip(results) {
            let stored = r.message.expect("an append result carries its message");
            if r.duplicate {
                l.resolved_unknown += 1;
            }
            let previous = l
                .acked
                .insert(m.client_msg_id.clone(), (stored.msg_id, stored.seq));
            assert!(previous.is_none(), "acknowledged twice by one writer");
        }
    }
}

/// The fixed set: sent until acknowledged, returning `client_msg_id` → `(msg_id, seq, duplicate)`.
async fn send_fixed(
    callers: &mut Callers,
    fixed: &[hpb::NewMessage],
    ledger: &Mutex<Ledger>,
) -> HashMap<String, (String, i64, bool)> {
    let mut out = HashMap::new();
    for chunk in fixed.chunks(10) {
        let results = append_until_acked(callers, chunk, ledger).await;
        for (m, r) in chunk.iter().zip(results) {
            let stored = r.message.expect("message");
            out.insert(
                m.client_msg_id.clone(),
                (stored.msg_id, stored.seq, r.duplicate),
            );
        }
    }
    out
}

pub async fn scenario(mode: StopMode) {
    let label = format!("restart({})", mode.name());
    let restarts = pick(2, 6);
    let writers = pick(8, 16);
    let load_period = pick(Duration::from_millis(700), Duration::from_secs(3));
    let down_period = pick(Duration::from_millis(300), Duration::from_secs(2));

    let mut pg = OwnPg::start();
    let server = Server::start(&pg.url("roaming"), &server_config()).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    // The fixed set, acknowledged once before anything goes wrong.
    let fixed: Vec<hpb::NewMessage> = (0..40)
        .map(|i| {
            let c = i % CONVERSATIONS;
            let id = format!("fixed-{i}");
            text(&sender(c), &recipient(c), &id, &id)
        })
        .collect();
    let mut fixed_callers = server.callers("a0");
    let originals = send_fixed(&mut fixed_callers, &fixed, &ledger).await;
    assert!(originals.values().all(|(_, _, dup)| !dup));

    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            tokio::spawn(writer(
                w,
                server.callers("gateway"),
                ledger.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let mut recovery_ms = Vec::new();
    let mut down_ms = Vec::new();
    let mut fixed_retries = 0usize;
    let mut fixed_mismatch = 0usize;
    for _ in 0..restarts {
        tokio::time::sleep(load_period).await;
        let t_down = Instant::now();
        tokio::task::block_in_place(|| pg.stop(mode));
        tokio::time::sleep(down_period).await;
        // Watch for the first moment a fresh connection answers while pg_ctl starts it.
        let pg_port = pg.port;
        let probe = tokio::spawn(async move {
            let url = format!("postgres://postgres@127.0.0.1:{pg_port}/roaming");
            loop {
                if let Ok(Ok((client, conn))) = tokio::time::timeout(
                    Duration::from_millis(500),
                    tokio_postgres::connect(&url, tokio_postgres::NoTls),
                )
                .await
                {
                    tokio::spawn(conn);
                    if client.simple_query("SELECT 1").await.is_ok() {
                        return Instant::now();
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        tokio::task::block_in_place(|| pg.start_again());
        let t_up = probe.await.unwrap();
        down_ms.push(t_up.duration_since(t_down).as_millis());
        // Service back: the first acknowledged append after PostgreSQL answered.
        let waited = Instant::now();
        let back = loop {
            let first = ledger
                .lock()
                .unwrap()
                .successes
                .iter()
                .copied()
                .filter(|t| *t >= t_up)
                .min();
            if let Some(t) = first {
                break t;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "{label}: no append succeeded within 10 s of PostgreSQL coming back"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        recovery_ms.push(back.duration_since(t_up).as_millis());

        // The fixed set again: duplicates, with the original ids.
        let again = send_fixed(&mut fixed_callers, &fixed, &ledger).await;
        for (id, (msg_id, seq, dup)) in &again {
            fixed_retries += 1;
            let (orig_id, orig_seq, _) = &originals[id];
            if !dup || msg_id != orig_id || seq != orig_seq {
                fixed_mismatch += 1;
            }
        }
    }
    tokio::time::sleep(load_period).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }

    // Read everything back through the service.
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    let mut stored = 0usize;
    let mut duplicates = 0usize;
    let mut gaps = 0usize;
    let mut found: HashMap<String, (String, i64)> = HashMap::new();
    for c in 0..CONVERSATIONS {
        let mut reader = server.callers(&sender(c));
        let messages = reader.read_all(peer(&recipient(c))).await;
        for (k, m) in messages.iter().enumerate() {
            if m.seq != k as i64 + 1 {
                gaps += 1;
            }
            if found
                .insert(m.client_msg_id.clone(), (m.msg_id.clone(), m.seq))
                .is_some()
            {
                duplicates += 1;
            }
        }
        stored += messages.len();
    }
    let mut lost = 0usize;
    let mut changed = 0usize;
    for (id, ack) in ledger.acked.iter() {
        match found.get(id) {
            None => lost += 1,
            Some(f) if f != ack => changed += 1,
            Some(_) => {}
        }
    }
    for (id, (msg_id, seq, _)) in &originals {
        match found.get(id) {
            None => lost += 1,
            Some(f) if f.0 != *msg_id || f.1 != *seq => changed += 1,
            Some(_) => {}
        }
    }
    let acknowledged = ledger.acked.len() + originals.len();
    // Everything stored was acknowledged (every failed batch was retried until it was).
    let unacknowledged_stored = stored.saturating_sub(acknowledged);
    let errors_outside =
        ledger
            .codes
            .outside(&["Unavailable", "DeadlineExceeded", CLIENT_DEADLINE]);

    println!(
        "{label}: restarts={restarts} writers={writers} acknowledged={acknowledged} \
         stored={stored} lost={lost} changed={changed} duplicates={duplicates} gaps={gaps} \
         unacknowledged_stored={unacknowledged_stored} resolved_unknown={} retries={} \
         errors={} down_ms={down_ms:?} recovery_ms={recovery_ms:?} \
         same_id_retries={fixed_retries} same_id_mismatch={fixed_mismatch}",
        ledger.resolved_unknown, ledger.retries, ledger.codes
    );
    assert_eq!(lost, 0, "{label}: acknowledged appends lost");
    assert_eq!(changed, 0, "{label}: acknowledged msg_id/seq changed");
    assert_eq!(duplicates, 0, "{label}: a client_msg_id stored twice");
    assert_eq!(gaps, 0, "{label}: seq gaps");
    assert_eq!(
        unacknowledged_stored, 0,
        "{label}: stored but never acknowledged"
    );
    assert!(
        errors_outside.is_empty(),
        "{label}: errors other than UNAVAILABLE/DEADLINE_EXCEEDED: {}",
        ledger.codes
    );
    assert!(
        ledger.codes.total() > 0,
        "{label}: the outage was not noticed at all (did PostgreSQL really stop?)"
    );
    assert_eq!(
        fixed_mismatch, 0,
        "{label}: a retry did not return the original msg_id and seq"
    );
    for ms in &recovery_ms {
        assert!(
            *ms <= 1000,
            "{label}: service back {ms} ms after PostgreSQL (limit 1000 ms)"
        );
    }
    drop(server);
    drop(pg);
}
