//! The operations: each scenario once through the client against the server, once through
//! the store's own API in this process (`roaming_store::Store`, what the server calls), and
//! once as the ceiling — the same SQL the store runs for it (prepared, on a pool of the same
//! size), issued straight to PostgreSQL. For ingest the ceiling is the raw INSERT.

use crate::load::mix;
use crate::runner::{Done, Op};
use crate::shape::{Class, Generation};
use deadpool_postgres::{GenericClient as _, Pool};
use futures::FutureExt as _;
use roaming_client::Client;
use roaming_client::proto::common::v1::ConversationRef;
use roaming_client::proto::conversation::v1 as cpb;
use roaming_client::proto::history::v1 as hpb;
use roaming_domain::{Conversation, ConversationKind, MessageKind, MsgId, NewMessage, UserId};
use roaming_store::{Direction, ListQuery, PageQuery, PageStart, Store};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tonic::metadata::MetadataValue;

/// One conversation as its reader sees it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `conv_key`.
    pub key: String,
    /// The reading user (a participant or member).
    pub reader: String,
    /// The other PEER participant (PEER) — the conversation id the reader uses, and the
    /// recipient of the reader's messages; the group id for GROUP.
    pub view_id: String,
    /// 1 PEER, 2 GROUP.
    pub kind: i16,
    /// Messages loaded into it.
    pub messages: u64,
}

/// What the scenarios pick from: every conversation loaded so far, sampled anchors, users.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    /// Every conversation of every generation loaded.
    pub targets: Vec<Target>,
    /// Random anchors, uniform over stored messages: (target, msg_id).
    pub anchors: Vec<(u32, i64)>,
    /// Conversations read whole by the streaming scenario (200..=5,000 messages).
    pub stream_targets: Vec<u32>,
    /// Ordinary PEER conversations, for appends.
    pub peers: Vec<u32>,
    /// Users with 10 conversations.
    pub light_users: Vec<String>,
    /// Users with 1,000 conversations.
    pub heavy_users: Vec<String>,
}

impl Workload {
    /// Adds a loaded generation's conversations and users.
    pub fn add(&mut self, g: &Generation) {
        for c in &g.convs {
            let reader = g.user(c.members[0]).to_owned();
            let view_id = if c.kind == 1 {
                g.user(c.members[1]).to_owned()
            } else {
                c.group_id().to_owned()
            };
            let i = self.targets.len() as u32;
            if (200..=5000).contains(&c.messages) {
                self.stream_targets.push(i);
            }
            if c.class == Class::Peer {
                self.peers.push(i);
            }
            self.targets.push(Target {
                key: c.key.clone(),
                reader,
                view_id,
                kind: c.kind,
                messages: c.messages,
            });
        }
        self.light_users
            .extend(g.light_users.iter().map(|&u| g.user(u).to_owned()));
        self.heavy_users
            .extend(g.heavy_users.iter().map(|&u| g.user(u).to_owned()));
        if self.stream_targets.is_empty() {
            // Small data sets: stream the largest conversations that one call can cover.
            let mut by_size: Vec<u32> = (0..self.targets.len() as u32)
                .filter(|&i| self.targets[i as usize].messages <= 5000)
                .collect();
            by_size.sort_by_key(|&i| std::cmp::Reverse(self.targets[i as usize].messages));
            self.stream_targets = by_size.into_iter().take(50).collect();
        }
    }

    /// Samples `count` anchors uniformly over every stored message (so conversations are
    /// picked in proportion to their size) and looks their `msg_id`s up.
    pub async fn sample_anchors(
        &mut self,
        db: &tokio_postgres::Client,
        count: usize,
        seed: u64,
    ) -> anyhow::Result<()> {
        let mut cumulative = Vec::with_capacity(self.targets.len());
        let mut sum = 0u64;
        for t in &self.targets {
            sum += t.messages;
            cumulative.push(sum);
        }
        let mut picks: Vec<(u32, i64)> = Vec::with_capacity(count);
        for n in 0..count as u64 {
            let r = mix(seed ^ n.wrapping_mul(0x1000_0001)) % sum.max(1);
            let t = cumulative.partition_point(|&c| c <= r);
            let seq = 1 + (mix(r ^ 0xA5A5) % self.targets[t].messages) as i64;
            picks.push((t as u32, seq));
        }
        let mut anchors = Vec::with_capacity(count);
        for chunk in picks.chunks(5000) {
            let keys: Vec<&str> = chunk
                .iter()
                .map(|(t, _)| self.targets[*t as usize].key.as_str())
                .collect();
            let seqs: Vec<i64> = chunk.iter().map(|(_, s)| *s).collect();
            let rows = db
                .query(
                    "SELECT a.i, m.msg_id FROM unnest($1::text[], $2::bigint[]) \
                     WITH ORDINALITY AS a(k, s, i) \
                     JOIN messages m ON m.conv_key = a.k AND m.seq = a.s ORDER BY a.i",
                    &[&keys, &seqs],
                )
                .await?;
            for r in rows {
                let i: i64 = r.get(0);
                anchors.push((chunk[(i - 1) as usize].0, r.get::<_, i64>(1)));
            }
        }
        self.anchors = anchors;
        Ok(())
    }
}

/// The SQL of the read ceilings: the store's own statements (so the ceiling is always what
/// the service runs), plus the raw INSERT ceilings.
pub mod sql {
    use std::sync::LazyLock;

    /// `Store::fetch_page`, for `order` `ASC` or `DESC`.
    pub fn page(order: &str) -> String {
        match order {
            "ASC" => roaming_store::sql::PAGE_FORWARD.clone(),
            _ => roaming_store::sql::PAGE_BACKWARD.clone(),
        }
    }

    /// The bare keyset page, newest first: conversation `$1`, after message `$2`, limit `$3`
    /// (the store's message columns, no visibility rule).
    pub static BARE_PAGE_BACKWARD: LazyLock<String> = LazyLock::new(|| bare_page("<", "DESC"));
    /// The bare keyset page, oldest first.
    pub static BARE_PAGE_FORWARD: LazyLock<String> = LazyLock::new(|| bare_page(">", "ASC"));

    fn bare_page(cmp: &str, order: &str) -> String {
        format!(
            "SELECT {} FROM messages m WHERE m.conv_key = $1 AND m.seq {cmp} \
             (SELECT a.seq FROM messages a WHERE a.conv_key = $1 AND a.msg_id = $2) \
             ORDER BY m.seq {order} LIMIT $3",
            roaming_store::sql::MESSAGE_COLUMNS
        )
    }

    /// `Store::list_conversations` on a database of `layout`.
    pub fn list(layout: roaming_store::sql::Layout) -> &'static str {
        roaming_store::sql::list_statement(layout, false)
    }

    /// Raw INSERT ceiling, one row.
    pub const RAW_INSERT: &str = "INSERT INTO messages (conv_key, seq, sender, recipient, \
         msg_type, body, attributes, client_msg_id, server_time_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    /// Raw INSERT ceiling, many rows in one statement.
    pub const RAW_INSERT_MANY: &str = "INSERT INTO messages (conv_key, seq, sender, recipient, \
         msg_type, body, attributes, client_msg_id, server_time_ms) \
         SELECT $1, s, snd, rcp, k, b, a, c, $2 \
         FROM unnest($3::bigint[], $4::text[], $5::text[], $6::smallint[], $7::bytea[], \
                     $8::jsonb[], $9::text[]) AS t(s, snd, rcp, k, b, a, c)";
}

/// Read scenarios (each has a ceiling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// One page from a random anchor.
    Page {
        /// 20 or 50.
        size: u32,
        /// Newest first.
        backward: bool,
    },
    /// One conversation's whole history in one stream (pages of 50).
    Stream,
    /// The first page of a user's conversation list.
    List {
        /// With 1,000 conversations (else 10).
        heavy: bool,
    },
}

impl Read {
    /// The scenario's name in tables.
    pub fn name(self) -> String {
        match self {
            Read::Page { size, backward } => format!(
                "history_page_{size}_{}",
                if backward { "backward" } else { "forward" }
            ),
            Read::Stream => "history_stream_whole".into(),
            Read::List { heavy: false } => "list_10_conversations".into(),
            Read::List { heavy: true } => "list_1000_conversations".into(),
        }
    }
}

/// Write scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// One message per call.
    Single,
    /// 100 messages to one conversation per call.
    Batch,
    /// 100 messages over 10 conversations per call.
    BatchSpread,
}

impl Write {
    /// Messages per call.
    pub fn batch(self) -> usize {
        match self {
            Write::Single => 1,
            Write::Batch | Write::BatchSpread => 100,
        }
    }

    /// Conversations per call.
    pub fn conversations(self) -> usize {
        match self {
            Write::BatchSpread => 10,
            _ => 1,
        }
    }

    /// The scenario's name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Write::Single => "append_single",
            Write::Batch => "append_batch_100",
            Write::BatchSpread => "append_batch_100_over_10",
        }
    }
}

/// Everything an operation needs, shared by the workers.
pub struct Ctx {
    /// The workload.
    pub workload: Arc<Workload>,
    /// Connected clients (separate HTTP/2 connections), service token, no act-as.
    pub clients: Vec<Client>,
    /// The ceiling's pool (same size as the server's).
    pub pool: Pool,
    /// The store's own API over the ceiling's pool, called in this process: what the
    /// server does for each call, without gRPC, the server process and the client.
    pub store: Store,
    /// Seeds the picks.
    pub seed: u64,
    /// Unique per run: keeps client_msg_ids and ceiling keys fresh.
    pub nonce: String,
    /// Numbers client_msg_ids.
    pub ids: std::sync::atomic::AtomicU64,
    /// The change feed's users, once seeded.
    pub feed: Option<Arc<crate::feed::Feed>>,
    /// The rare-type messages planted for the filtered page (top stage only).
    pub rare: Option<Rare>,
}

/// Messages of a type the loader never writes, planted in the biggest conversation: what a
/// filtered page (`types`) of a rare type finds.
#[derive(Debug, Clone)]
pub struct Rare {
    /// The conversation (an index into `Workload::targets`).
    pub target: u32,
    /// Its messages.
    pub messages: u64,
    /// The planted type.
    pub kind: MessageKind,
    /// How many of them the reader sees.
    pub count: u64,
}

/// The type planted by [`plant_rare`]: the loader writes TEXT, IMAGE and CUSTOM only.
pub const RARE_KIND: MessageKind = MessageKind::Video;

/// How many rare messages [`plant_rare`] plants.
pub const RARE_COUNT: usize = 3;

/// The name of the filtered-page scenario.
pub const FILTERED: &str = "history_page_filtered_rare";

/// Turns [`RARE_COUNT`] messages of the biggest conversation (a PEER one when sizes tie),
/// spread over its history and none hidden from its reader, into [`RARE_KIND`].
pub async fn plant_rare(db: &tokio_postgres::Client, workload: &Workload) -> anyhow::Result<Rare> {
    let (target, t) = workload
        .targets
        .iter()
        .enumerate()
        .max_by_key(|(i, t)| (t.messages, t.kind == 1, std::cmp::Reverse(*i)))
        .ok_or_else(|| anyhow::anyhow!("no conversation loaded"))?;
    let hidden: Vec<i64> = db
        .query(
            "SELECT seq FROM tombstones WHERE conv_key = $1 AND user_id = $2",
            &[&t.key, &t.reader],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let n = t.messages as i64;
    let mut seqs: Vec<i64> = Vec::new();
    for k in 0..RARE_COUNT as i64 {
        // At 1/6, 3/6, 5/6 of the history, moved up past tombstones and earlier picks.
        let mut seq = (n * (2 * k + 1) / (2 * RARE_COUNT as i64)).clamp(1, n);
        while (hidden.contains(&seq) || seqs.contains(&seq)) && seq < n {
            seq += 1;
        }
        seqs.push(seq);
    }
    seqs.sort_unstable();
    seqs.dedup();
    let already: i64 = db
        .query_one(
            "SELECT count(*) FROM messages WHERE conv_key = $1 AND msg_type = $2",
            &[&t.key, &RARE_KIND.as_i16()],
        )
        .await?
        .get(0);
    anyhow::ensure!(
        already == 0,
        "{} already holds {RARE_KIND:?} messages",
        t.key
    );
    let updated = db
        .execute(
            "UPDATE messages SET msg_type = $3 WHERE conv_key = $1 AND seq = ANY($2)",
            &[&t.key, &seqs, &RARE_KIND.as_i16()],
        )
        .await?;
    Ok(Rare {
        target: target as u32,
        messages: t.messages,
        kind: RARE_KIND,
        count: updated,
    })
}

/// What one call of a read scenario reads: the same pick for the service, the store's API
/// and the ceiling, so the three read the same things.
enum Pick<'a> {
    /// A page from an anchor.
    Page(PagePick<'a>),
    /// A whole history, newest first, pages of 50.
    Stream(&'a Target),
    /// The first page of this user's conversation list.
    List(&'a str),
}

/// A page of `size` from `anchor` (a `msg_id`) in `target`.
struct PagePick<'a> {
    target: &'a Target,
    anchor: i64,
    size: u32,
    backward: bool,
}

fn pick<T: Copy>(items: &[T], h: u64) -> T {
    items[(h % items.len() as u64) as usize]
}

pub(crate) fn as_user<T>(message: T, user: &str) -> Result<tonic::Request<T>, String> {
    let mut request = tonic::Request::new(message);
    let value = MetadataValue::try_from(user).map_err(|e| e.to_string())?;
    request.metadata_mut().insert("x-roaming-user", value);
    Ok(request)
}

fn conv_ref(t: &Target) -> ConversationRef {
    ConversationRef {
        r#type: i32::from(t.kind),
        id: t.view_id.clone(),
    }
}

/// The reader and the conversation of `t` as the store takes them.
fn store_view(t: &Target) -> Result<(UserId, Conversation), String> {
    let reader = UserId::parse("reader", &t.reader).map_err(db_error)?;
    let conversation =
        Conversation::from_key(&t.key).ok_or_else(|| format!("malformed key {:?}", t.key))?;
    Ok((reader, conversation))
}

/// A page request as the history service hands it to the store (no filters).
fn page_query(backward: bool, start: PageStart, limit: u32) -> PageQuery {
    PageQuery {
        direction: if backward {
            Direction::Backward
        } else {
            Direction::Forward
        },
        start,
        limit,
        start_time_ms: None,
        end_time_ms: None,
        senders: Vec::new(),
        kinds: Vec::new(),
    }
}

/// A message of a write scenario as the history service hands it to the store.
fn store_message(m: hpb::NewMessage) -> Result<NewMessage, String> {
    let sender = UserId::parse("sender", &m.sender).map_err(db_error)?;
    let recipient = UserId::parse("recipient", &m.recipient).map_err(db_error)?;
    Ok(NewMessage {
        conversation: Conversation::peer(sender.clone(), recipient),
        sender,
        kind: MessageKind::Text,
        body: m.body,
        attributes: m.attributes,
        client_msg_id: m.client_msg_id,
    })
}

pub(crate) fn status(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

pub(crate) fn db_error(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The activity window of the conversation list (the server's default).
const LIST_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;

/// Entries in the first page of the conversation list (the server's default).
pub(crate) const LIST_PAGE: u32 = 10;

pub(crate) const BODY: &[u8] =
    b"Benchmark message body: a typical chat line of about a hundred bytes, \
    give or take, in plain text.";

impl Ctx {
    pub(crate) fn client(&self, w: usize) -> &Client {
        &self.clients[w % self.clients.len()]
    }

    pub(crate) fn h(&self, w: usize, i: u64, salt: u64) -> u64 {
        mix(self.seed ^ ((w as u64) << 40) ^ i ^ (salt << 56))
    }

    /// The operation that runs `f` on this context for call `i` of worker `w`.
    pub(crate) fn op<F, Fut>(self: &Arc<Self>, f: F) -> Op
    where
        F: Fn(Arc<Self>, usize, u64) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Done, String>> + Send + 'static,
    {
        let ctx = self.clone();
        Arc::new(move |w, i| f(ctx.clone(), w, i).boxed())
    }

    fn pick_read(&self, read: Read, w: usize, i: u64) -> Pick<'_> {
        let wl = &self.workload;
        let h = self.h(w, i, 1);
        match read {
            Read::Page { size, backward } => {
                let (t, anchor) = pick(&wl.anchors, h);
                Pick::Page(PagePick {
                    target: &wl.targets[t as usize],
                    anchor,
                    size,
                    backward,
                })
            }
            Read::Stream => Pick::Stream(&wl.targets[pick(&wl.stream_targets, h) as usize]),
            Read::List { heavy } => {
                let users = if heavy {
                    &wl.heavy_users
                } else {
                    &wl.light_users
                };
                Pick::List(&users[(h % users.len() as u64) as usize])
            }
        }
    }

    /// A read scenario through the service.
    pub fn service_read(self: &Arc<Self>, read: Read) -> Op {
        self.op(move |ctx, w, i| async move { ctx.read_once(read, w, i).await })
    }

    async fn read_once(&self, read: Read, w: usize, i: u64) -> Result<Done, String> {
        match self.pick_read(read, w, i) {
            Pick::Page(p) => {
                let request = hpb::FetchHistoryRequest {
                    conversation: Some(conv_ref(p.target)),
                    direction: if p.backward {
                        hpb::Direction::Backward as i32
                    } else {
                        hpb::Direction::Forward as i32
                    },
                    start_msg_id: p.anchor.to_string(),
                    page_size: p.size,
                    max_pages: 1,
                    ..Default::default()
                };
                self.fetch(w, request, &p.target.reader).await
            }
            Pick::Stream(target) => self.fetch_newest(w, target, 50, 100).await,
            Pick::List(user) => {
                let response = self
                    .client(w)
                    .conversations()
                    .list_conversations(as_user(cpb::ListConversationsRequest::default(), user)?)
                    .await
                    .map_err(status)?
                    .into_inner();
                non_empty_list(user, response.conversations.len())
            }
        }
    }

    /// Up to `max_pages` pages of `page_size` of `t` through the service, newest first.
    async fn fetch_newest(
        &self,
        w: usize,
        t: &Target,
        page_size: u32,
        max_pages: u32,
    ) -> Result<Done, String> {
        let request = hpb::FetchHistoryRequest {
            conversation: Some(conv_ref(t)),
            direction: hpb::Direction::Backward as i32,
            page_size,
            max_pages,
            ..Default::default()
        };
        self.fetch(w, request, &t.reader).await
    }

    async fn fetch(
        &self,
        w: usize,
        request: hpb::FetchHistoryRequest,
        reader: &str,
    ) -> Result<Done, String> {
        let mut stream = self
            .client(w)
            .history()
            .fetch_history(as_user(request, reader)?)
            .await
            .map_err(status)?
            .into_inner();
        let mut n = 0u64;
        while let Some(page) = stream.message().await.map_err(status)? {
            n += page.messages.len() as u64;
        }
        Ok(Done::items(n))
    }

    /// A read scenario through the store's own API in this process (`fetch_page`,
    /// `list_conversations`), as the server calls it.
    pub fn store_read(self: &Arc<Self>, read: Read) -> Op {
        self.op(move |ctx, w, i| async move { ctx.store_read_once(read, w, i).await })
    }

    async fn store_read_once(&self, read: Read, w: usize, i: u64) -> Result<Done, String> {
        match self.pick_read(read, w, i) {
            Pick::Page(p) => {
                let (reader, conversation) = store_view(p.target)?;
                let start = PageStart::AfterMessage {
                    msg_id: MsgId(p.anchor),
                    field: "start_msg_id",
                };
                let page = self
                    .store
                    .fetch_page(
                        &reader,
                        &conversation,
                        &page_query(p.backward, start, p.size),
                    )
                    .await
                    .map_err(db_error)?;
                Ok(Done::items(page.messages.len() as u64))
            }
            Pick::Stream(target) => {
                let (reader, conversation) = store_view(target)?;
                let mut query = page_query(true, PageStart::After(Direction::Backward.start()), 50);
                let mut total = 0u64;
                for _ in 0..100 {
                    let page = self
                        .store
                        .fetch_page(&reader, &conversation, &query)
                        .await
                        .map_err(db_error)?;
                    total += page.messages.len() as u64;
                    match page.messages.last() {
                        Some(last) if !page.is_end => query.start = PageStart::After(last.seq),
                        _ => break,
                    }
                }
                Ok(Done::items(total))
            }
            Pick::List(user) => {
                let user = UserId::parse("user", user).map_err(db_error)?;
                let query = ListQuery {
                    kinds: vec![ConversationKind::Peer, ConversationKind::Group],
                    active_since_ms: now_ms() - LIST_WINDOW_MS,
                    after: None,
                    limit: LIST_PAGE,
                    pinned_only: false,
                    mark: None,
                    unread_cap: roaming_conversation::ReadSettings::DEFAULT.max_unread_count,
                };
                let (entries, _) = self
                    .store
                    .list_conversations(&user, &query)
                    .await
                    .map_err(db_error)?;
                non_empty_list(user.as_str(), entries.len())
            }
        }
    }

    /// The ceiling of a read scenario: the statements the store issues for it, prepared,
    /// straight to PostgreSQL.
    pub fn ceiling_read(self: &Arc<Self>, read: Read) -> Op {
        self.op(move |ctx, w, i| async move { ctx.ceiling_once(read, w, i).await })
    }

    async fn ceiling_once(&self, read: Read, w: usize, i: u64) -> Result<Done, String> {
        match self.pick_read(read, w, i) {
            Pick::Page(p) => self
                .ceiling_page(p.target, p.backward, None, Some(p.anchor), p.size)
                .await
                .map(|(n, _)| Done::items(n)),
            Pick::Stream(target) => {
                let mut position = i64::MAX;
                let mut total = 0u64;
                for _ in 0..100 {
                    let (n, last) = self
                        .ceiling_page(target, true, Some(position), None, 50)
                        .await?;
                    total += n;
                    match last {
                        Some(seq) => position = seq,
                        None => break,
                    }
                }
                Ok(Done::items(total))
            }
            Pick::List(user) => {
                let c = self.pool.get().await.map_err(db_error)?;
                let stmt = c
                    .prepare_typed_cached(
                        sql::list(self.store.layout()),
                        &roaming_store::sql::LIST_PARAMETERS,
                    )
                    .await
                    .map_err(db_error)?;
                let since = now_ms() - LIST_WINDOW_MS;
                let kinds: Vec<i16> = vec![1, 2];
                let fetch = i64::from(LIST_PAGE) + 1;
                let cap = roaming_conversation::ReadSettings::DEFAULT.max_unread_count;
                let rows = c
                    .query(
                        &stmt,
                        &[&user, &kinds, &since, &i64::MAX, &"", &fetch, &"", &cap],
                    )
                    .await
                    .map_err(db_error)?;
                non_empty_list(user, rows.len().min(LIST_PAGE as usize))
            }
        }
    }

    /// The bare keyset page of a page read ([`report::BARE_IS`](crate::report::BARE_IS)):
    /// the same anchors and sizes as the service and the ceiling, no visibility rule. `None`
    /// for the reads that are not one page.
    pub fn bare_read(self: &Arc<Self>, read: Read) -> Option<Op> {
        if !matches!(read, Read::Page { .. }) {
            return None;
        }
        Some(self.op(move |ctx, w, i| async move {
            let Pick::Page(p) = ctx.pick_read(read, w, i) else {
                return Err("a page read picked something else".into());
            };
            let c = ctx.pool.get().await.map_err(db_error)?;
            let text = if p.backward {
                &*sql::BARE_PAGE_BACKWARD
            } else {
                &*sql::BARE_PAGE_FORWARD
            };
            let statement = c.prepare_cached(text).await.map_err(db_error)?;
            let fetch = i64::from(p.size) + 1;
            let rows = c
                .query(&statement, &[&p.target.key, &p.anchor, &fetch])
                .await
                .map_err(db_error)?;
            Ok(Done::items(rows.len().min(p.size as usize) as u64))
        }))
    }

    /// `fetch_page` as the store runs it: one checkout, one prepared statement (the view,
    /// the anchor and the page, limit + 1), starting after seq `after` or message `anchor`.
    /// Returns the messages in the page and, when more follow, the last seq.
    async fn ceiling_page(
        &self,
        t: &Target,
        backward: bool,
        after: Option<i64>,
        anchor: Option<i64>,
        limit: u32,
    ) -> Result<(u64, Option<i64>), String> {
        let c = self.pool.get().await.map_err(db_error)?;
        let order = if backward { "DESC" } else { "ASC" };
        // Typed as the store prepares it: the unfiltered shape leaves `$6` and `$7` unused,
        // so PostgreSQL could not infer their types.
        let page = c
            .prepare_typed_cached(&sql::page(order), &roaming_store::sql::PAGE_PARAMETERS)
            .await
            .map_err(db_error)?;
        let none: Option<i64> = None;
        let senders: Vec<String> = Vec::new();
        let kinds: Vec<i16> = Vec::new();
        let fetch = i64::from(limit) + 1;
        let group = Conversation::from_key(&t.key)
            .ok_or_else(|| format!("malformed key {:?}", t.key))?
            .kind()
            != ConversationKind::Peer;
        let rows = c
            .query(
                &page,
                &[
                    &t.key, &after, &anchor, &none, &none, &senders, &kinds, &t.reader, &fetch,
                    &group,
                ],
            )
            .await
            .map_err(db_error)?;
        let first = rows.first().ok_or("no conversation")?;
        if first.get::<_, Option<i64>>("page_after").is_none() {
            return Err("anchor not found".into());
        }
        // An empty page is one row without a message.
        let found = if first.get::<_, Option<i64>>("seq").is_some() {
            rows.len()
        } else {
            0
        };
        let n = found.min(limit as usize);
        let last = if found > limit as usize && n > 0 {
            Some(rows[n - 1].get::<_, i64>("seq"))
        } else {
            None
        };
        Ok((n as u64, last))
    }

    fn new_messages(&self, write: Write, w: usize, i: u64) -> Vec<hpb::NewMessage> {
        let wl = &self.workload;
        let per_conv = write.batch() / write.conversations();
        let mut out = Vec::with_capacity(write.batch());
        for c in 0..write.conversations() {
            let t = &wl.targets[pick(&wl.peers, self.h(w, i, 2 + c as u64)) as usize];
            for k in 0..per_conv {
                // Alternate the sender between the two participants.
                let (sender, recipient) = if k % 2 == 0 {
                    (&t.reader, &t.view_id)
                } else {
                    (&t.view_id, &t.reader)
                };
                out.push(hpb::NewMessage {
                    conversation_type: roaming_client::proto::common::v1::ConversationType::Peer
                        as i32,
                    sender: sender.clone(),
                    recipient: recipient.clone(),
                    r#type: roaming_client::proto::common::v1::MessageType::Text as i32,
                    body: BODY.to_vec(),
                    attributes: Default::default(),
                    client_msg_id: format!(
                        "{}-{}",
                        self.nonce,
                        self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    ),
                });
            }
        }
        out
    }

    /// A write scenario through the service.
    pub fn service_write(self: &Arc<Self>, write: Write) -> Op {
        self.op(move |ctx, w, i| async move { ctx.append_once(write, w, i).await })
    }

    async fn append_once(&self, write: Write, w: usize, i: u64) -> Result<Done, String> {
        let messages = self.new_messages(write, w, i);
        let n = messages.len();
        let response = self
            .client(w)
            .history()
            .append_messages(hpb::AppendMessagesRequest { messages })
            .await
            .map_err(status)?
            .into_inner();
        all_stored(n, response.results.iter().map(|r| r.duplicate))
    }

    /// A write scenario through the store's own `Store::append` in this process, as the
    /// server calls it: the one-statement path for a single message, the transaction for a
    /// batch.
    pub fn store_write(self: &Arc<Self>, write: Write) -> Op {
        self.op(move |ctx, w, i| async move { ctx.store_append(write, w, i).await })
    }

    async fn store_append(&self, write: Write, w: usize, i: u64) -> Result<Done, String> {
        let batch = self
            .new_messages(write, w, i)
            .into_iter()
            .map(store_message)
            .collect::<Result<Vec<_>, _>>()?;
        let outcomes = self
            .store
            .append(&batch, now_ms())
            .await
            .map_err(db_error)?;
        all_stored(batch.len(), outcomes.iter().map(|o| o.duplicate))
    }

    /// The raw INSERT ceiling: one INSERT statement per call in autocommit (one row, or the
    /// batch's rows in one statement), into conversations of the ceiling's own that no lock
    /// or duplicate check touches. `touched` collects (key, last seq, last time) so the
    /// conversations rows can be written afterwards (the invariants hold at the end).
    pub fn raw_insert(
        self: &Arc<Self>,
        write: Write,
        cell: u32,
        touched: Arc<Mutex<Touched>>,
    ) -> Op {
        let next_seq: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
        self.op(move |ctx, w, i| {
            let next_seq = next_seq.clone();
            let touched = touched.clone();
            async move {
                let n = write.batch();
                let convs = write.conversations();
                let per_conv = n / convs;
                let c = ctx.pool.get().await.map_err(db_error)?;
                let now = now_ms();
                let attrs = serde_json::json!({});
                for k in 0..convs {
                    // One conversation per (worker, slot): no two workers write one key.
                    let a = format!("zc{}c{cell}w{w}s{k}a", ctx.nonce);
                    let b = format!("zc{}c{cell}w{w}s{k}b", ctx.nonce);
                    let key = format!("p:{a}:{b}");
                    let first = {
                        let mut seqs = next_seq.lock().unwrap_or_else(|p| p.into_inner());
                        let s = seqs.entry(key.clone()).or_insert(0);
                        let first = *s + 1;
                        *s += per_conv as i64;
                        first
                    };
                    if write == Write::Single {
                        let stmt = c.prepare_cached(sql::RAW_INSERT).await.map_err(db_error)?;
                        let id = format!("{}-raw-{w}-{i}", ctx.nonce);
                        c.execute(
                            &stmt,
                            &[&key, &first, &a, &b, &1i16, &BODY, &attrs, &id, &now],
                        )
                        .await
                        .map_err(db_error)?;
                    } else {
                        let stmt = c
                            .prepare_cached(sql::RAW_INSERT_MANY)
                            .await
                            .map_err(db_error)?;
                        let seqs: Vec<i64> = (0..per_conv as i64).map(|s| first + s).collect();
                        let senders: Vec<&str> = (0..per_conv)
                            .map(|s| if s % 2 == 0 { a.as_str() } else { b.as_str() })
                            .collect();
                        let recipients: Vec<&str> = (0..per_conv)
                            .map(|s| if s % 2 == 0 { b.as_str() } else { a.as_str() })
                            .collect();
                        let kinds = vec![1i16; per_conv];
                        let bodies = vec![BODY; per_conv];
                        let all_attrs = vec![attrs.clone(); per_conv];
                        let ids: Vec<String> = (0..per_conv)
                            .map(|s| format!("{}-raw-{w}-{i}-{k}-{s}", ctx.nonce))
                            .collect();
                        c.execute(
                            &stmt,
                            &[
                                &key,
                                &now,
                                &seqs,
                                &senders,
                                &recipients,
                                &kinds,
                                &bodies,
                                &all_attrs,
                                &ids,
                            ],
                        )
                        .await
                        .map_err(db_error)?;
                    }
                    let last = first + per_conv as i64 - 1;
                    let mut t = touched.lock().unwrap_or_else(|p| p.into_inner());
                    let e = t.entry(key).or_insert((a, b, 0, 0));
                    e.2 = e.2.max(last);
                    e.3 = e.3.max(now);
                }
                Ok(Done::items(n as u64))
            }
        })
    }

    /// The mixed workload: 50 % open a conversation (newest page of 20), 20 % scroll (a page
    /// of 50 from a random anchor), 10 % conversation list (10 conversations), 20 % append.
    pub fn mixed(self: &Arc<Self>) -> Op {
        self.op(|ctx, w, i| async move {
            let h = ctx.h(w, i, 9);
            let (done, label) = match h % 10 {
                0..=4 => {
                    let wl = &ctx.workload;
                    let t = &wl.targets[(ctx.h(w, i, 10) % wl.targets.len() as u64) as usize];
                    (ctx.fetch_newest(w, t, 20, 1).await, "open_newest_page_20")
                }
                5..=6 => {
                    let scroll = Read::Page {
                        size: 50,
                        backward: true,
                    };
                    (ctx.read_once(scroll, w, i).await, "scroll_page_50")
                }
                7 => (
                    ctx.read_once(Read::List { heavy: false }, w, i).await,
                    "list_10",
                ),
                _ => (ctx.append_once(Write::Single, w, i).await, "append_single"),
            };
            done.map(|d| Done {
                items: d.items,
                label,
            })
        })
    }
}

impl Ctx {
    fn rare(&self) -> Result<(&Rare, &Target), String> {
        let rare = self.rare.as_ref().ok_or("no rare messages planted")?;
        Ok((rare, &self.workload.targets[rare.target as usize]))
    }

    /// The newest page of 50 of the rare messages' conversation through the service: only
    /// the rare type (`filtered`, all [`RARE_COUNT`] of them come back), or unfiltered (the
    /// reference: 50 messages).
    pub fn service_filtered(self: &Arc<Self>, filtered: bool) -> Op {
        self.op(move |ctx, w, _| async move {
            let (rare, t) = ctx.rare()?;
            let request = hpb::FetchHistoryRequest {
                conversation: Some(conv_ref(t)),
                direction: hpb::Direction::Backward as i32,
                page_size: 50,
                max_pages: 1,
                types: if filtered {
                    vec![i32::from(rare.kind.as_i16())]
                } else {
                    Vec::new()
                },
                ..Default::default()
            };
            let done = ctx.fetch(w, request, &t.reader).await?;
            let want = if filtered { rare.count } else { 50 };
            if done.items != want {
                return Err(format!("{} messages, expected {want}", done.items));
            }
            Ok(done)
        })
    }

    /// The filtered page through the store's own `fetch_page` in this process.
    pub fn store_filtered(self: &Arc<Self>) -> Op {
        self.op(move |ctx, _, _| async move {
            let (rare, t) = ctx.rare()?;
            let (reader, conversation) = store_view(t)?;
            let mut query = page_query(true, PageStart::After(Direction::Backward.start()), 50);
            query.kinds = vec![rare.kind];
            let page = ctx
                .store
                .fetch_page(&reader, &conversation, &query)
                .await
                .map_err(db_error)?;
            let n = page.messages.len() as u64;
            if n != rare.count {
                return Err(format!("{n} messages, expected {}", rare.count));
            }
            Ok(Done::items(n))
        })
    }
}

/// A list page's outcome: the scenarios' users all have conversations in the window.
fn non_empty_list(user: &str, entries: usize) -> Result<Done, String> {
    if entries == 0 {
        return Err(format!("{user}'s conversation list is empty"));
    }
    Ok(Done::items(entries as u64))
}

/// An append's outcome: every message of the `n` new, none a duplicate.
fn all_stored(n: usize, duplicates: impl ExactSizeIterator<Item = bool>) -> Result<Done, String> {
    let results = duplicates.len();
    let mut duplicates = duplicates;
    if results != n || duplicates.any(|d| d) {
        return Err("unexpected append results".into());
    }
    Ok(Done::items(n as u64))
}

/// Ceiling conversations written by the raw INSERT ceiling: key → (a, b, last seq, last time).
pub type Touched = HashMap<String, (String, String, i64, i64)>;

/// Writes the `conversations` and `user_conversations` rows of the raw INSERT ceiling's
/// conversations, so the database's invariants hold again.
pub async fn settle_touched(db: &tokio_postgres::Client, touched: &Touched) -> anyhow::Result<()> {
    let keys: Vec<&str> = touched.keys().map(String::as_str).collect();
    let seqs: Vec<i64> = touched.values().map(|v| v.2).collect();
    let times: Vec<i64> = touched.values().map(|v| v.3).collect();
    db.execute(
        "INSERT INTO conversations (conv_key, kind, last_seq, last_time_ms) \
         SELECT k, 1, s, t FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS x(k, s, t) \
         ON CONFLICT (conv_key) DO UPDATE SET last_seq = excluded.last_seq, \
             last_time_ms = excluded.last_time_ms",
        &[&keys, &seqs, &times],
    )
    .await?;
    let mut uc_keys = Vec::new();
    let mut uc_users = Vec::new();
    for (k, (a, b, _, _)) in touched {
        for u in [a, b] {
            uc_keys.push(k.as_str());
            uc_users.push(u.as_str());
        }
    }
    db.execute(
        "INSERT INTO user_conversations (conv_key, user_id, kind) \
         SELECT k, u, 1 FROM unnest($1::text[], $2::text[]) AS x(k, u) ON CONFLICT DO NOTHING",
        &[&uc_keys, &uc_users],
    )
    .await?;
    Ok(())
}

/// Wall time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
