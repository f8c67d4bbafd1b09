//! The change-feed scenarios (SyncConversations).
//!
//! **Data.** Beside the main data set (after the first stage's load), one *set* of users per
//! size in [`FEED_SIZES`] — as many users per set as the highest concurrency of the feed's
//! cells (16), so that each worker syncs its own user and no worker's writes show up in
//! another's delta. A user of a set with `n` conversations has `n - groups` PEER
//! conversations (1–2 messages each, each with a partner of its own) and `groups` GROUPs of
//! 11 members (the user and 10 of the partners; 10 messages each): 95 + 5 and 980 + 20. Rows
//! are written by binary COPY like the loader's, in one transaction per table, so every row's
//! `change_xid` is that COPY's id (the schema's default): older than any token the scenarios
//! take. Every conversation can be listed (it has a message, nothing removed), so a snapshot
//! returns all `n`.
//!
//! **Scenarios**, each through the service (a SyncConversations stream read to its end, the
//! default page of 50) and through the store's API (`Store::sync_page` page after page, as the
//! server calls it):
//! - `sync_snapshot_<n>`: no token, every page;
//! - `sync_delta_empty_<n>`: the worker's token from its previous call (or the setup's), no
//!   writes since: one empty page;
//! - `sync_delta_10_changes_<n>`: before each call, untimed, 10 new messages in 10 of the
//!   user's conversations (10 single-message appends through the store, each its own
//!   transaction, sent by the partner or a member), then the delta, timed: exactly 10
//!   changes. Measured in rounds (`runner::run_phased`): every worker's writes, then every
//!   worker's delta, so the writes are outside the timed part and never share the machine
//!   with a timed call.
//!
//! Each call checks what it got (all `n`, none, exactly 10): a miscount is an error of the
//! cell. The reference ("ceiling") of every feed cell is one history page of 50 through the
//! service, measured in the same cell (same stage, same concurrency, same harness).

use crate::load::mix;
use crate::runner::{Done, Op, Setup};
use crate::scenarios::{BODY, Ctx, as_user, db_error, status};
use anyhow::Context as _;
use futures::FutureExt as _;
use futures::pin_mut;
use roaming_client::proto::conversation::v1 as cpb;
use roaming_domain::{Conversation, GroupId, MessageKind, NewMessage, UserId};
use roaming_store::SyncQuery;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

/// Conversations per user of each set.
pub const FEED_SIZES: [usize; 2] = [100, 1_000];

/// New messages (in as many conversations) before each timed delta of
/// `sync_delta_10_changes_<n>`.
pub const CHANGES: usize = 10;

/// Changes per page (the server's default when a request says 0).
const PAGE: u32 = 50;

/// Members of a feed GROUP besides its user.
const GROUP_OTHERS: usize = 10;

/// Messages in each feed GROUP.
const GROUP_MESSAGES: i64 = 10;

/// GROUPs among `n` conversations: a few (5 of 100, 20 of 1,000).
pub fn groups_of(n: usize) -> usize {
    (n / 50).max(5).min(n)
}

/// The three feed scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCall {
    /// No token, every page.
    Snapshot,
    /// A token from right before, no writes since.
    Empty,
    /// A token from right before, [`CHANGES`] new messages in as many conversations since.
    Changes,
}

impl SyncCall {
    /// All three, in the order the cells run (each leaves the workers' tokens current).
    pub const ALL: [SyncCall; 3] = [SyncCall::Snapshot, SyncCall::Empty, SyncCall::Changes];

    /// The scenario's name for a set of users with `n` conversations.
    pub fn name(self, n: usize) -> String {
        match self {
            SyncCall::Snapshot => format!("sync_snapshot_{n}"),
            SyncCall::Empty => format!("sync_delta_empty_{n}"),
            SyncCall::Changes => format!("sync_delta_{CHANGES}_changes_{n}"),
        }
    }

    /// How many changes a call must return for a set with `n` conversations.
    fn expected(self, n: usize) -> usize {
        match self {
            SyncCall::Snapshot => n,
            SyncCall::Empty => 0,
            SyncCall::Changes => CHANGES,
        }
    }
}

/// One conversation of a feed user.
#[derive(Debug, Clone)]
pub struct FeedConv {
    /// The conversation.
    pub conversation: Conversation,
    /// Its key.
    pub key: String,
    /// 1 PEER, 2 GROUP.
    pub kind: i16,
    /// Who sends its new messages: the PEER partner, or a group member other than the user.
    pub other: UserId,
    /// The other members of a GROUP (empty for PEER).
    pub members: Vec<UserId>,
    /// Messages seeded.
    pub messages: i64,
    /// Server time of its last seeded message.
    pub end_ms: i64,
}

/// A feed user and the tokens the scenarios carry from call to call.
#[derive(Debug)]
pub struct FeedUser {
    /// The user.
    pub id: UserId,
    /// Their conversations.
    pub convs: Vec<FeedConv>,
    /// The service's next-sync token after the last call through the service.
    pub service_token: Mutex<Option<String>>,
    /// The snapshot the next store-level delta is relative to (the last call's first page's).
    pub store_since: Mutex<Option<String>>,
}

/// The users with the same number of conversations.
#[derive(Debug)]
pub struct FeedSet {
    /// Conversations per user.
    pub conversations: usize,
    /// GROUPs among them.
    pub groups: usize,
    /// One per worker.
    pub users: Vec<FeedUser>,
}

/// Every feed user.
#[derive(Debug)]
pub struct Feed {
    /// One set per size of [`FEED_SIZES`].
    pub sets: Vec<FeedSet>,
}

fn uid(s: String) -> UserId {
    UserId::parse("user", &s).expect("the bench's feed user ids are valid")
}

impl Feed {
    /// `users` users per size, their newest messages up to `n` minutes before `now_ms`.
    pub fn plan(users: usize, now_ms: i64) -> Self {
        let sets = FEED_SIZES
            .iter()
            .map(|&n| {
                let groups = groups_of(n);
                let users = (0..users)
                    .map(|u| {
                        let me = uid(format!("f{n}u{u}"));
                        let partners: Vec<UserId> = (0..n - groups)
                            .map(|p| uid(format!("f{n}u{u}p{p}")))
                            .collect();
                        let mut convs = Vec::with_capacity(n);
                        for (j, partner) in partners.iter().enumerate() {
                            let conversation = Conversation::peer(me.clone(), partner.clone());
                            convs.push(FeedConv {
                                key: conversation.key(),
                                conversation,
                                kind: 1,
                                other: partner.clone(),
                                members: Vec::new(),
                                messages: 1 + (mix((u * n + j) as u64) % 2) as i64,
                                end_ms: 0,
                            });
                        }
                        for g in 0..groups {
                            let id = GroupId::parse("group", &format!("f{n}u{u}g{g}"))
                                .expect("valid group id");
                            let members: Vec<UserId> = (0..GROUP_OTHERS)
                                .map(|k| partners[(g * GROUP_OTHERS + k) % partners.len()].clone())
                                .collect();
                            let conversation = Conversation::Group(id);
                            convs.push(FeedConv {
                                key: conversation.key(),
                                conversation,
                                kind: 2,
                                other: members[0].clone(),
                                members,
                                messages: GROUP_MESSAGES,
                                end_ms: 0,
                            });
                        }
                        // Activity: spread over the last n minutes, groups among the peers.
                        let len = convs.len() as u64;
                        for (j, c) in convs.iter_mut().enumerate() {
                            let slot = mix(((u as u64) << 32) ^ j as u64) % len;
                            c.end_ms = now_ms - 60_000 * (1 + slot as i64) - j as i64;
                        }
                        FeedUser {
                            id: me,
                            convs,
                            service_token: Mutex::new(None),
                            store_since: Mutex::new(None),
                        }
                    })
                    .collect();
                FeedSet {
                    conversations: n,
                    groups,
                    users,
                }
            })
            .collect();
        Self { sets }
    }
}

/// What seeding the feed users took.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FeedLoad {
    /// Users per size.
    pub users_per_size: usize,
    /// Conversations per user, per set: (total, of which GROUPs).
    pub sizes: Vec<(usize, usize)>,
    /// Rows written.
    pub conversations: usize,
    /// `user_conversations` rows written.
    pub user_conversations: usize,
    /// Messages written.
    pub messages: usize,
    /// Seconds: COPY of the three tables, then `VACUUM (ANALYZE)` of them.
    pub secs: f64,
}

/// Writes every feed user's conversations, participants and messages by binary COPY.
pub async fn load(db: &tokio_postgres::Client, feed: &Feed) -> anyhow::Result<FeedLoad> {
    let started = Instant::now();
    let convs = || {
        feed.sets
            .iter()
            .flat_map(|s| s.users.iter())
            .flat_map(|u| u.convs.iter().map(move |c| (u, c)))
    };
    let mut counts = (0usize, 0usize, 0usize);
    {
        let sink = db
            .copy_in(
                "COPY conversations (conv_key, kind, last_seq, last_time_ms) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let w = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::INT2, Type::INT8, Type::INT8]);
        pin_mut!(w);
        for (_, c) in convs() {
            w.as_mut()
                .write(&[&c.key, &c.kind, &c.messages, &c.end_ms])
                .await?;
            counts.0 += 1;
        }
        w.finish().await?;
    }
    {
        let sink = db
            .copy_in("COPY user_conversations (conv_key, user_id, kind) FROM STDIN (FORMAT binary)")
            .await?;
        let w = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::INT2]);
        pin_mut!(w);
        for (u, c) in convs() {
            let others: Vec<&UserId> = if c.kind == 1 {
                vec![&c.other]
            } else {
                c.members.iter().collect()
            };
            for user in std::iter::once(&u.id).chain(others) {
                w.as_mut().write(&[&c.key, &user.as_str(), &c.kind]).await?;
                counts.1 += 1;
            }
        }
        w.finish().await?;
    }
    {
        let sink = db
            .copy_in(
                "COPY messages (conv_key, seq, sender, recipient, msg_type, body, attributes, \
                 client_msg_id, server_time_ms) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let w = BinaryCopyInWriter::new(
            sink,
            &[
                Type::TEXT,
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
        let attributes = serde_json::json!({});
        for (u, c) in convs() {
            for seq in 1..=c.messages {
                // Alternate the user and the other side; the last message is the newest.
                let sender = if seq % 2 == 1 { &u.id } else { &c.other };
                let recipient = c.conversation.id_seen_by(sender);
                let time = c.end_ms - 1_000 * (c.messages - seq);
                let client_msg_id = format!("feed-{seq}");
                let values: [&(dyn ToSql + Sync); 9] = [
                    &c.key,
                    &seq,
                    &sender.as_str(),
                    &recipient,
                    &MessageKind::Text.as_i16(),
                    &BODY,
                    &attributes,
                    &client_msg_id,
                    &time,
                ];
                w.as_mut().write(&values).await?;
                counts.2 += 1;
            }
        }
        w.finish().await?;
    }
    db.batch_execute("VACUUM (ANALYZE) conversations, user_conversations, messages")
        .await
        .context("VACUUM after seeding the feed users")?;
    Ok(FeedLoad {
        users_per_size: feed.sets.first().map_or(0, |s| s.users.len()),
        sizes: feed
            .sets
            .iter()
            .map(|s| (s.conversations, s.groups))
            .collect(),
        conversations: counts.0,
        user_conversations: counts.1,
        messages: counts.2,
        secs: started.elapsed().as_secs_f64(),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn check(sync: SyncCall, n: usize, got: usize) -> Result<(), String> {
    let want = sync.expected(n);
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{} returned {got} changes, expected {want}",
            sync.name(n)
        ))
    }
}

/// `k` distinct indexes below `n`, picked from `h`.
fn distinct(n: usize, k: usize, h: u64) -> Vec<usize> {
    let mut out = Vec::with_capacity(k);
    let mut j = 0u64;
    while out.len() < k.min(n) {
        let x = (mix(h ^ j.wrapping_mul(0x9E37_79B9)) % n as u64) as usize;
        if !out.contains(&x) {
            out.push(x);
        }
        j += 1;
    }
    out
}

impl Ctx {
    fn feed_user(&self, set: usize, w: usize) -> Result<(&FeedSet, &FeedUser), String> {
        let feed = self
            .feed
            .as_deref()
            .ok_or("the feed users were not seeded")?;
        let set = &feed.sets[set];
        Ok((set, &set.users[w % set.users.len()]))
    }

    /// One SyncConversations call through the service, read to its end: (changes, the
    /// last page's token).
    async fn service_sync(
        &self,
        w: usize,
        user: &FeedUser,
        token: Option<String>,
    ) -> Result<(usize, String), String> {
        let request = cpb::SyncConversationsRequest {
            sync_token: token.unwrap_or_default(),
            page_size: 0,
        };
        let mut stream = self
            .client(w)
            .conversations()
            .sync_conversations(as_user(request, user.id.as_str())?)
            .await
            .map_err(status)?
            .into_inner();
        let mut changes = 0;
        let mut next = None;
        while let Some(page) = stream.message().await.map_err(status)? {
            changes += page.changes.len();
            if page.is_end {
                next = Some(page.next_sync_token);
            }
        }
        let next = next.ok_or("the feed ended without a page marked is_end")?;
        Ok((changes, next))
    }

    /// The same through the store's API, as the server pages it: (changes, the snapshot of
    /// the first page, which the next delta is relative to).
    async fn store_sync(
        &self,
        user: &FeedUser,
        since: Option<String>,
    ) -> Result<(usize, String), String> {
        let mut query = SyncQuery {
            since,
            after: None,
            limit: PAGE,
            unread_cap: roaming_conversation::ReadSettings::DEFAULT.max_unread_count,
        };
        let mut target = None;
        let mut changes = 0;
        loop {
            let page = self
                .store
                .sync_page(&user.id, &query)
                .await
                .map_err(db_error)?;
            changes += page.changes.len();
            if !page.more {
                target.get_or_insert(page.snapshot);
                break;
            }
            let last = page
                .changes
                .last()
                .ok_or("a page without changes while more follow")?;
            query.after = Some((last.last_activity_ms, last.key.clone()));
            target.get_or_insert(page.snapshot);
        }
        Ok((changes, target.expect("set on every page")))
    }

    /// A feed scenario for set `set` through the service: each worker syncs its own user.
    pub fn feed_service(self: &Arc<Self>, sync: SyncCall, set: usize) -> Op {
        self.op(move |ctx, w, _| async move {
            let (s, user) = ctx.feed_user(set, w)?;
            let token = match sync {
                SyncCall::Snapshot => None,
                _ => Some(
                    lock(&user.service_token)
                        .clone()
                        .ok_or("no sync token (the setup failed)")?,
                ),
            };
            let (n, next) = ctx.service_sync(w, user, token).await?;
            *lock(&user.service_token) = Some(next);
            check(sync, s.conversations, n)?;
            Ok(Done::items(n as u64))
        })
    }

    /// A feed scenario for set `set` through the store's API in this process.
    pub fn feed_store(self: &Arc<Self>, sync: SyncCall, set: usize) -> Op {
        self.op(move |ctx, w, _| async move {
            let (s, user) = ctx.feed_user(set, w)?;
            let since = match sync {
                SyncCall::Snapshot => None,
                _ => Some(
                    lock(&user.store_since)
                        .clone()
                        .ok_or("no sync snapshot (the setup failed)")?,
                ),
            };
            let (n, next) = ctx.store_sync(user, since).await?;
            *lock(&user.store_since) = Some(next);
            check(sync, s.conversations, n)?;
            Ok(Done::items(n as u64))
        })
    }

    /// Untimed, before a delta cell: brings the token of each of the first `concurrency`
    /// users of `set` up to date (a delta from the token it has, or a snapshot), through the
    /// service or the store, so the cell's first call starts from a current token.
    pub fn feed_refresh(self: &Arc<Self>, set: usize, via_store: bool) -> Setup {
        let ctx = self.clone();
        Arc::new(move |concurrency| {
            let ctx = ctx.clone();
            async move {
                let calls = (0..concurrency).map(|w| {
                    let ctx = ctx.clone();
                    async move {
                        let (_, user) = ctx.feed_user(set, w)?;
                        if via_store {
                            let since = lock(&user.store_since).clone();
                            let (_, next) = ctx.store_sync(user, since).await?;
                            *lock(&user.store_since) = Some(next);
                        } else {
                            let token = lock(&user.service_token).clone();
                            let (_, next) = ctx.service_sync(w, user, token).await?;
                            *lock(&user.service_token) = Some(next);
                        }
                        Ok::<(), String>(())
                    }
                });
                futures::future::try_join_all(calls).await.map(|_| ())
            }
            .boxed()
        })
    }

    /// The untimed part of a `sync_delta_10_changes` round: [`CHANGES`] new messages from the
    /// other side in as many distinct conversations of the worker's user, each appended by
    /// the store in its own transaction (concurrently).
    pub fn feed_changes(self: &Arc<Self>, set: usize) -> Op {
        self.op(move |ctx, w, i| async move {
            let (_, user) = ctx.feed_user(set, w)?;
            let now = crate::scenarios::now_ms();
            let picks = distinct(user.convs.len(), CHANGES, ctx.h(w, i, 21));
            let appends = picks.into_iter().map(|k| {
                let c = &user.convs[k];
                let message = NewMessage {
                    conversation: c.conversation.clone(),
                    sender: c.other.clone(),
                    kind: MessageKind::Text,
                    body: BODY.to_vec(),
                    attributes: Default::default(),
                    client_msg_id: format!(
                        "{}-feed-{}",
                        ctx.nonce,
                        ctx.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    ),
                };
                let store = &ctx.store;
                async move { store.append(std::slice::from_ref(&message), now).await }
            });
            for outcome in futures::future::join_all(appends).await {
                let outcome = outcome.map_err(db_error)?;
                if outcome.len() != 1 || outcome[0].duplicate {
                    return Err("a feed change was not stored".into());
                }
            }
            Ok(Done::items(CHANGES as u64))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_have_their_sizes_and_a_few_groups() {
        let feed = Feed::plan(3, 1_800_000_000_000);
        assert_eq!(feed.sets.len(), FEED_SIZES.len());
        for (set, &n) in feed.sets.iter().zip(&FEED_SIZES) {
            assert_eq!(set.users.len(), 3);
            for u in &set.users {
                assert_eq!(u.convs.len(), n);
                let groups = u.convs.iter().filter(|c| c.kind == 2).count();
                assert_eq!(groups, groups_of(n));
                assert!(groups * 10 <= n, "mostly PEER");
                let keys: std::collections::HashSet<&str> =
                    u.convs.iter().map(|c| c.key.as_str()).collect();
                assert_eq!(keys.len(), n);
                for c in &u.convs {
                    assert!(c.messages >= 1);
                    assert!(c.end_ms < 1_800_000_000_000);
                    if c.kind == 2 {
                        assert_eq!(c.members.len(), GROUP_OTHERS);
                        assert!(c.members.contains(&c.other));
                    } else {
                        assert_eq!(c.conversation.id_seen_by(&u.id), c.other.as_str());
                    }
                }
            }
        }
        assert_eq!(groups_of(100), 5);
        assert_eq!(groups_of(1000), 20);
    }

    #[test]
    fn distinct_picks_are_distinct() {
        for h in 0..50 {
            let p = distinct(100, CHANGES, h);
            let mut q = p.clone();
            q.sort_unstable();
            q.dedup();
            assert_eq!(q.len(), CHANGES);
            assert!(p.iter().all(|&x| x < 100));
        }
        assert_eq!(distinct(3, CHANGES, 1).len(), 3);
    }
}
