//! Convergence of the client's local mirror, randomized.
//!
//! Four users, nine devices (alice has three, the others two), each device a `Client` with
//! its own in-memory `LocalStore`. While two gateway writers append to every PEER pair and
//! to a GROUP, one of them also changing the group's membership and purging conversations
//! for everyone (with and without their messages), every device runs its own seeded script:
//! sync, open a conversation (its newest page or all of it), remove messages by id and by
//! time, remove a conversation one-way (with and without its messages), list conversations,
//! verify a conversation, mark it read (up to a held message or the newest), pin or unpin it,
//! add or remove a mark. The writers' senders now and then recall or edit what they stored. One of alice's devices syncs once at the start and then stays
//! offline. The scripts run in two phases; between them the server's clock moves past the
//! 30-day change retention, so in the second (the longer) each device's first sync rebuilds
//! its mirror while the writers write, and its later syncs are deltas again.
//!
//! Once the writers and scripts are done, every device syncs once more, and then each
//! device's store must equal a fresh snapshot plus a fresh FetchHistory of every listed
//! conversation (message for message, list entries with their read state, unread count,
//! receipt, pin and marks included), with every DigestHistory
//! bucket equal to the store's own digest (`roaming_testkit::mirror`).
//!
//! Seeded: `ROAMING_SYNC_SEED` (default 20240611) picks every actor's script; the
//! interleaving is the scheduler's, so the verdict must not depend on it. A failure prints
//! the seed. Bounded by counts, not time: a few seconds; `ROAMING_RELIABILITY_LONG=1` runs
//! five times as many operations.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roaming_client::{
    Client, ConversationRef, ConversationType, Direction, Error, LocalQuery, LocalStore,
    NewMessage, RemovalScope, RetryPolicy,
};
use roaming_testkit::mirror::mirror_differences;
use roaming_testkit::{DAY_MS, TestApp};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const GROUP: &str = "team";
/// Members at the start; carol and dave come and go.
const FIRST_MEMBERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const MOVING_MEMBERS: [&str; 2] = ["carol", "dave"];
const DEFAULT_SEED: u64 = 20240611;

fn devices_of(user: &str) -> usize {
    if user == "alice" { 3 } else { 2 }
}

/// The device that syncs once and then stays away past the retention.
fn is_offline(user: &str, device: usize) -> bool {
    user == "alice" && device == 2
}

/// Every conversation `user` may take part in, as `user` names it.
fn conversations_of(user: &str) -> Vec<ConversationRef> {
    let mut out: Vec<ConversationRef> = USERS
        .iter()
        .filter(|u| **u != user)
        .map(|u| ConversationRef::peer(*u))
        .collect();
    out.push(ConversationRef::group(GROUP));
    out
}

#[derive(Default)]
struct Stats {
    appended: AtomicUsize,
    /// Recalls and edits.
    changed: AtomicUsize,
    admin_ops: AtomicUsize,
    device_ops: AtomicUsize,
    syncs: AtomicUsize,
    rebuilds: AtomicUsize,
    changes: AtomicUsize,
    verifies: AtomicUsize,
    refetched_buckets: AtomicUsize,
    /// MarkRead, PinConversation and MarkConversation calls.
    read_state_ops: AtomicUsize,
    /// Calls that failed in a way the scenario does not allow.
    unexpected: Mutex<Vec<String>>,
}

impl Stats {
    fn add(counter: &AtomicUsize, n: usize) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn unexpected(&self, what: String) {
        self.unexpected.lock().unwrap().push(what);
    }
}

/// Prints the seed if the test panics, whatever panicked.
struct SeedOnFailure(u64);

impl Drop for SeedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "sync_convergence failed with ROAMING_SYNC_SEED={} (rerun with it to repeat the scripts)",
                self.0
            );
        }
    }
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 20,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
        multiplier: 2.0,
        max_elapsed: Duration::from_secs(20),
    }
}

async fn typed(app: &TestApp, token: String, act_as: Option<&str>) -> Client {
    let mut builder = Client::builder(app.endpoint.clone())
        .token(token)
        .retry(retry());
    if let Some(user) = act_as {
        builder = builder.act_as(user);
    }
    builder.connect().await.expect("connect")
}

struct Device {
    name: String,
    client: Client,
    store: LocalStore,
    user: &'static str,
    index: usize,
}

/// Allowed failures of a device's own calls: the group's membership changes under it.
/// Marks the devices put on conversations.
const MARKS: [&str; 3] = ["work", "family", "later"];

/// A read-state call may meet a message recalled or purged meanwhile, or a conversation
/// purged for everyone: NOT_FOUND is a state it may meet, not a failure.
fn tolerate_gone<T>(result: Result<T, Error>) -> Result<(), Error> {
    match result {
        Ok(_) | Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn allowed(error: &Error) -> bool {
    matches!(error, Error::PermissionDenied(_))
}

async fn sync(device: &Device, stats: &Stats) {
    match device.client.sync().await {
        Ok(report) => {
            Stats::add(&stats.syncs, 1);
            Stats::add(&stats.changes, report.changes);
            if report.rebuilt {
                Stats::add(&stats.rebuilds, 1);
            }
        }
        Err(e) => stats.unexpected(format!("{}: sync: {e}", device.name)),
    }
}

fn local_messages(
    store: &LocalStore,
    conversation: &ConversationRef,
) -> Vec<roaming_client::Message> {
    store
        .history(
            conversation,
            &LocalQuery {
                direction: Direction::Forward,
                start_msg_id: None,
                limit: usize::MAX,
            },
        )
        .expect("local history")
}

/// `ops` operations of one device's script, one at a time.
async fn device_script(
    device: Device,
    mut rng: StdRng,
    ops: usize,
    stats: Arc<Stats>,
) -> (Device, StdRng) {
    if is_offline(device.user, device.index) {
        return (device, rng);
    }
    let conversations = conversations_of(device.user);
    for _ in 0..ops {
        Stats::add(&stats.device_ops, 1);
        let conversation = conversations[rng.random_range(0..conversations.len())].clone();
        let held = local_messages(&device.store, &conversation);
        let roll = rng.random_range(0..100);
        let result: Result<(), Error> = match roll {
            0..35 => {
                sync(&device, &stats).await;
                Ok(())
            }
            35..55 => {
                let request = device.client.fetch_history(conversation.clone());
                if rng.random_bool(0.5) {
                    request
                        .page_size(rng.random_range(1..=8))
                        .page()
                        .await
                        .map(drop)
                } else {
                    use futures::TryStreamExt;
                    request
                        .page_size(rng.random_range(5..=50))
                        .messages()
                        .try_collect::<Vec<_>>()
                        .await
                        .map(drop)
                }
            }
            55..70 if !held.is_empty() => {
                let n = rng.random_range(1..=2.min(held.len()));
                let ids: Vec<String> = (0..n)
                    .map(|_| held[rng.random_range(0..held.len())].msg_id.clone())
                    .collect();
                device
                    .client
                    .remove_messages(&conversation, ids)
                    .await
                    .map(drop)
            }
            70..78 if !held.is_empty() => {
                let at = held[rng.random_range(0..held.len())].server_time_ms;
                device
                    .client
                    .remove_messages_before(&conversation, at)
                    .await
            }
            78..83 => {
                device
                    .client
                    .remove_conversation(&conversation, rng.random_bool(0.5), RemovalScope::ForMe)
                    .await
            }
            83..90 => match device
                .client
                .verify(&conversation)
                .bucket_size(rng.random_range(1..=20))
                .await
            {
                Ok(report) => {
                    Stats::add(&stats.verifies, 1);
                    Stats::add(&stats.refetched_buckets, report.buckets_refetched);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            90..93 => device
                .client
                .list_conversations()
                .page_size(50)
                .page()
                .await
                .map(drop),
            // Read state: every device of the user, and the peer's (receipts), must learn it.
            93..96 => {
                let upto = (!held.is_empty() && rng.random_bool(0.7))
                    .then(|| held[rng.random_range(0..held.len())].msg_id.clone());
                Stats::add(&stats.read_state_ops, 1);
                tolerate_gone(
                    device
                        .client
                        .mark_read(&conversation, upto.as_deref())
                        .await,
                )
            }
            96..98 => {
                Stats::add(&stats.read_state_ops, 1);
                let pinned = rng.random_bool(0.6);
                tolerate_gone(device.client.pin(&conversation, pinned).await)
            }
            _ => {
                Stats::add(&stats.read_state_ops, 1);
                let mark = MARKS[rng.random_range(0..MARKS.len())];
                let (add, remove) = if rng.random_bool(0.6) {
                    (vec![mark], vec![])
                } else {
                    (vec![], vec![mark])
                };
                tolerate_gone(
                    device
                        .client
                        .mark_conversation(&conversation, add, remove)
                        .await,
                )
            }
        };
        if let Err(e) = result {
            if !allowed(&e) {
                stats.unexpected(format!("{}: op {roll} on {conversation}: {e}", device.name));
            }
        }
        tokio::task::yield_now().await;
    }
    (device, rng)
}

/// A gateway writer: operations `ops` of its script, each an append of 1-3 messages to a
/// random conversation; writer 0 also changes the group's membership and purges.
async fn writer(
    app: Arc<TestApp>,
    index: usize,
    mut rng: StdRng,
    ops: std::ops::Range<usize>,
    stats: Arc<Stats>,
    members: Arc<Mutex<Vec<&'static str>>>,
) -> StdRng {
    let service = typed(&app, app.token("gateway", true), None).await;
    for op in ops {
        app.clock.advance(rng.random_range(0..1500));
        if index == 0 && rng.random_bool(0.12) {
            admin(&app, &service, &mut rng, &stats, &members).await;
            continue;
        }
        let (kind, sender, recipient) = if rng.random_bool(0.7) {
            let a = USERS[rng.random_range(0..USERS.len())];
            let others: Vec<&str> = USERS.iter().copied().filter(|u| *u != a).collect();
            (
                ConversationType::Peer,
                a,
                others[rng.random_range(0..others.len())],
            )
        } else {
            let now: Vec<&str> = members.lock().unwrap().clone();
            if now.is_empty() {
                continue;
            }
            (
                ConversationType::Group,
                now[rng.random_range(0..now.len())],
                GROUP,
            )
        };
        let batch: Vec<NewMessage> = (0..rng.random_range(1..=3))
            .map(|i| {
                NewMessage::new(kind, sender, recipient, format!("w{index}-{op}-{i}"))
                    .text(format!("{sender} #{op}.{i}"))
            })
            .collect();
        match service.append(batch).await {
            Ok(results) => {
                Stats::add(&stats.appended, results.len());
                // Now and then the sender recalls or edits what was just stored.
                if rng.random_bool(0.2) {
                    let m = &results[0].message;
                    let as_sender = typed(&app, app.token("gateway", true), Some(sender)).await;
                    let result = if rng.random_bool(0.5) {
                        as_sender.recall(&m.conversation, &m.msg_id).await
                    } else {
                        let body = format!("edited by {sender}");
                        as_sender
                            .edit(&m.conversation, &m.msg_id, body, Default::default())
                            .await
                            .map(drop)
                    };
                    match result {
                        Ok(()) => Stats::add(&stats.changed, 1),
                        // Left the group, purged meanwhile, or recalled by a twin: states a
                        // recall or an edit may meet.
                        Err(Error::PermissionDenied(_) | Error::NotFound(_)) => {}
                        Err(e) => stats.unexpected(format!("writer {index}: change: {e}")),
                    }
                }
            }
            // The sender left the group meanwhile.
            Err(Error::PermissionDenied(_)) => {}
            Err(e) => stats.unexpected(format!("writer {index}: append: {e}")),
        }
        tokio::task::yield_now().await;
    }
    rng
}

/// One membership change or purge.
async fn admin(
    app: &TestApp,
    service: &Client,
    rng: &mut StdRng,
    stats: &Stats,
    members: &Mutex<Vec<&'static str>>,
) {
    Stats::add(&stats.admin_ops, 1);
    let group = ConversationRef::group(GROUP);
    let result = match rng.random_range(0..4) {
        0 => {
            let who = MOVING_MEMBERS[rng.random_range(0..MOVING_MEMBERS.len())];
            let result = service.remove_members(&group, [who]).await;
            members.lock().unwrap().retain(|m| *m != who);
            result
        }
        1 => {
            let who = MOVING_MEMBERS[rng.random_range(0..MOVING_MEMBERS.len())];
            let result = service.add_members(&group, [who]).await;
            let mut now = members.lock().unwrap();
            if !now.contains(&who) {
                now.push(who);
            }
            result
        }
        2 => {
            let a = USERS[rng.random_range(0..USERS.len())];
            let others: Vec<&str> = USERS.iter().copied().filter(|u| *u != a).collect();
            let b = others[rng.random_range(0..others.len())];
            let as_a = typed(app, app.token("gateway", true), Some(a)).await;
            as_a.remove_conversation(
                &ConversationRef::peer(b),
                rng.random_bool(0.5),
                RemovalScope::ForEveryone,
            )
            .await
        }
        _ => {
            service
                .remove_conversation(&group, rng.random_bool(0.5), RemovalScope::ForEveryone)
                .await
        }
    };
    if let Err(e) = result {
        stats.unexpected(format!("admin: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_devices_mirror_converges_to_a_fresh_snapshot_and_history() {
    let seed = std::env::var("ROAMING_SYNC_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("ROAMING_SYNC_SEED is a number"))
        .unwrap_or(DEFAULT_SEED);
    let _guard = SeedOnFailure(seed);
    let scale = if std::env::var_os("ROAMING_RELIABILITY_LONG").is_some() {
        5
    } else {
        1
    };
    let (writer_ops, device_ops) = (60 * scale, 25 * scale);
    let started = Instant::now();

    let app = Arc::new(TestApp::spawn().await);
    app.add_members(
        roaming_client::proto::common::v1::ConversationType::Group,
        GROUP,
        &FIRST_MEMBERS,
    )
    .await;
    // Every conversation exists before the devices' first sync.
    let service = typed(&app, app.token("gateway", true), None).await;
    let mut first = Vec::new();
    for (i, a) in USERS.iter().enumerate() {
        for b in &USERS[i + 1..] {
            first.push(
                NewMessage::new(ConversationType::Peer, *a, *b, format!("hello-{a}-{b}"))
                    .text("hello"),
            );
        }
    }
    first
        .push(NewMessage::new(ConversationType::Group, "alice", GROUP, "hello-team").text("hello"));
    service.append(first).await.expect("first messages");

    let stats = Arc::new(Stats::default());
    let members = Arc::new(Mutex::new(FIRST_MEMBERS.to_vec()));
    // Every device syncs once before the writers start.
    let mut devices = Vec::new();
    for (u, user) in USERS.iter().enumerate() {
        for d in 0..devices_of(user) {
            let store = LocalStore::in_memory().expect("store");
            let client = typed(&app, app.token(user, false), None)
                .await
                .with_local_store(store.clone());
            let device = Device {
                name: format!("{user}/{d}"),
                client,
                store,
                user,
                index: d,
            };
            sync(&device, &stats).await;
            let rng = StdRng::seed_from_u64(seed ^ (1000 + 10 * u as u64 + d as u64));
            devices.push((device, rng));
        }
    }
    let mut writer_rngs: Vec<StdRng> = (0..2)
        .map(|w| StdRng::seed_from_u64(seed ^ (100 + w as u64)))
        .collect();
    // Two phases of concurrent writers and device scripts, the server's clock moved past
    // the change retention between them: in the second (the longer), each device's first
    // sync rebuilds its mirror while the writers write, and its later syncs (the final one
    // included) are deltas again.
    let first_phase = (writer_ops * 2 / 5, device_ops * 2 / 5);
    for phase in 0..2 {
        let (writes, scripts) = if phase == 0 {
            (0..first_phase.0, first_phase.1)
        } else {
            app.clock.advance(31 * DAY_MS);
            (first_phase.0..writer_ops, device_ops - first_phase.1)
        };
        let writers: Vec<_> = writer_rngs
            .drain(..)
            .enumerate()
            .map(|(w, rng)| {
                tokio::spawn(writer(
                    app.clone(),
                    w,
                    rng,
                    writes.clone(),
                    stats.clone(),
                    members.clone(),
                ))
            })
            .collect();
        let scripts: Vec<_> = devices
            .drain(..)
            .map(|(device, rng)| tokio::spawn(device_script(device, rng, scripts, stats.clone())))
            .collect();
        for w in writers {
            writer_rngs.push(w.await.expect("no writer panicked"));
        }
        for d in scripts {
            devices.push(d.await.expect("no device panicked"));
        }
    }
    let finished: Vec<Device> = devices.into_iter().map(|(device, _)| device).collect();
    let loaded = started.elapsed();

    // Quiet: every device syncs once more, then must mirror the server.
    let mut differences = Vec::new();
    let rebuilt_before_the_end = stats.rebuilds.load(Ordering::Relaxed);
    for device in &finished {
        sync(device, &stats).await;
        for diff in mirror_differences(&app, device.user, &device.store).await {
            differences.push(format!("{}: {diff}", device.name));
        }
    }
    let unexpected = stats.unexpected.lock().unwrap().clone();
    let figures = format!(
        "seed {seed}: {} users, {} devices, {} writer operations ({} messages appended, {} \
         recalled or edited, {} membership changes and purges), {} device operations ({} syncs with {} changes, {} read-state calls, {} \
         rebuilt past retention, {} of them in the final sync, {} verifies refetching {} buckets); \
         load {:.1} s, total {:.1} s",
        USERS.len(),
        finished.len(),
        2 * writer_ops,
        stats.appended.load(Ordering::Relaxed),
        stats.changed.load(Ordering::Relaxed),
        stats.admin_ops.load(Ordering::Relaxed),
        stats.device_ops.load(Ordering::Relaxed),
        stats.syncs.load(Ordering::Relaxed),
        stats.changes.load(Ordering::Relaxed),
        stats.read_state_ops.load(Ordering::Relaxed),
        stats.rebuilds.load(Ordering::Relaxed),
        stats.rebuilds.load(Ordering::Relaxed) - rebuilt_before_the_end,
        stats.verifies.load(Ordering::Relaxed),
        stats.refetched_buckets.load(Ordering::Relaxed),
        loaded.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    println!("{figures}");
    assert!(
        unexpected.is_empty(),
        "{figures}\nunexpected failures: {unexpected:#?}"
    );
    assert!(
        differences.is_empty(),
        "{figures}\nmirrors that differ from the server: {differences:#?}"
    );
    // Every device's token predated the clock's jump, and every device synced after it (at
    // the latest at the end), so each was rebuilt exactly once.
    assert!(
        stats.rebuilds.load(Ordering::Relaxed) == finished.len(),
        "{figures}"
    );
}
