//! The read-state and change scenarios: what unread counts add to a list page, and MarkRead,
//! RecallMessage and EditMessage against a raw single-row UPDATE.
//!
//! - `list_sql_read_state_<n>` (n = 10, 1,000: the first [`PLANTED_USERS`] of the workload's
//!   light and heavy users, whose conversations were loaded by COPY with nothing read, and in
//!   [`PLANTED_CONVERSATIONS`] of each of which [`PLANTED_MESSAGES`] more messages from the
//!   other side are planted first, so that some entries count hundreds of unread messages):
//!   the list statement ([`roaming_store::sql::LIST`]) with its unread
//!   count and receipt columns, against the same statement without them
//!   ([`roaming_store::sql::LIST_WITHOUT_READ_STATE`]; on Citus their flat shapes, see
//!   [`roaming_store::sql::list_reference`]), both prepared on the bench's pool.
//!   The ratio is what the read state costs a list page (the issue's bound: at most 20 %, a
//!   ratio ≥ 0.8).
//! - `mark_read`, `recall`, `edit`: in rounds (`runner::run_phased`). In each round every
//!   worker, untimed, appends one message (through the store) to a PEER conversation of its
//!   own — from the partner for `mark_read`, from the worker's user for `recall` and `edit`
//!   — then, timed, the call through the service (MarkRead up to that message; a recall or
//!   an edit of it by a service token acting for its sender). The ceiling runs the same
//!   rounds with the same untimed append, and times one raw single-row UPDATE of what the
//!   call changes (the user's `read_seq`; the message's row), autocommit, prepared: the
//!   least a database must do for it. Targets: MarkRead ≥ 0.7 ×, recall and edit ≥ 0.5 ×.

use crate::runner::{Done, Op};
use crate::scenarios::{BODY, Ctx, as_user, db_error, now_ms, status};
use roaming_client::proto::common::v1::ConversationRef;
use roaming_client::proto::conversation::v1 as cpb;
use roaming_client::proto::history::v1 as hpb;
use roaming_domain::{Conversation, MessageKind, NewMessage, UserId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Users of each kind (light, heavy) whose list the list scenarios read.
pub const PLANTED_USERS: usize = 2;

/// Conversations of each such user that get [`PLANTED_MESSAGES`] unread messages more.
pub const PLANTED_CONVERSATIONS: usize = 3;

/// Unread messages planted in each of those conversations.
pub const PLANTED_MESSAGES: usize = 300;

/// The users the list scenarios read: the first [`PLANTED_USERS`] light or heavy users.
fn list_users(ctx: &Ctx, heavy: bool) -> &[String] {
    let users = if heavy {
        &ctx.workload.heavy_users
    } else {
        &ctx.workload.light_users
    };
    &users[..users.len().min(PLANTED_USERS)]
}

/// Plants [`PLANTED_MESSAGES`] messages from the other side in [`PLANTED_CONVERSATIONS`] PEER
/// conversations of each list user (through the store, 100 per append); returns how many.
pub async fn plant_unread(ctx: &Ctx) -> anyhow::Result<usize> {
    let mut planted = 0;
    for heavy in [false, true] {
        for user in list_users(ctx, heavy) {
            let c = ctx.pool.get().await?;
            let keys: Vec<String> = c
                .query(
                    "SELECT conv_key FROM user_conversations
                     WHERE user_id = $1 AND kind = 1 AND is_member ORDER BY conv_key LIMIT $2",
                    &[user, &(PLANTED_CONVERSATIONS as i64)],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            drop(c);
            for key in keys {
                let conversation = Conversation::from_key(&key)
                    .ok_or_else(|| anyhow::anyhow!("{key} is not a conversation key"))?;
                let Conversation::Peer { low, high } = &conversation else {
                    continue;
                };
                let other = if low.as_str() == user { high } else { low }.clone();
                for chunk in 0..PLANTED_MESSAGES.div_ceil(100) {
                    let batch: Vec<NewMessage> = (0..100.min(PLANTED_MESSAGES - chunk * 100))
                        .map(|i| NewMessage {
                            conversation: conversation.clone(),
                            sender: other.clone(),
                            kind: MessageKind::Text,
                            body: BODY.to_vec(),
                            attributes: Default::default(),
                            client_msg_id: format!("{}-unread-{chunk}-{i}", ctx.nonce),
                        })
                        .collect();
                    planted += ctx.store.append(&batch, now_ms()).await?.len();
                }
            }
        }
    }
    Ok(planted)
}

/// The list scenarios: (name, heavy user).
pub const LIST_SCENARIOS: [(&str, bool); 2] = [
    ("list_sql_read_state_10", false),
    ("list_sql_read_state_1000", true),
];

/// What the list scenarios' reference is.
pub const LIST_REFERENCE: &str = "the same list statement without the unread-count and receipt \
     columns, prepared, same pool size";

/// What the change scenarios' reference is.
pub const UPDATE_REFERENCE: &str = "one raw single-row UPDATE of what the call changes, \
     autocommit, prepared, after the same untimed append, same pool size";

/// The call a change scenario times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// MarkRead up to the message just received.
    MarkRead,
    /// RecallMessage of the message just sent.
    Recall,
    /// EditMessage of the message just sent.
    Edit,
}

impl Change {
    /// All three.
    pub const ALL: [Change; 3] = [Change::MarkRead, Change::Recall, Change::Edit];

    /// The scenario's name.
    pub fn name(self) -> &'static str {
        match self {
            Change::MarkRead => "mark_read",
            Change::Recall => "recall",
            Change::Edit => "edit",
        }
    }
}

/// The message a worker's round appended: its conversation's key, its seq and id.
#[derive(Debug, Clone)]
pub struct Appended {
    key: String,
    seq: i64,
    msg_id: String,
}

/// Each worker's last appended message, by worker.
pub type Slots = Arc<Mutex<HashMap<usize, Appended>>>;

/// The worker's two users: `(me, partner)`; the timed call is `me`'s.
fn users(ctx: &Ctx, change: Change, reference: bool, w: usize) -> (UserId, UserId) {
    let tag = format!(
        "zo{}{}{}w{w}",
        ctx.nonce,
        change.name().replace('_', ""),
        if reference { "r" } else { "s" }
    );
    let parse = |s: String| UserId::parse("user", &s).expect("the bench's user ids are valid");
    (parse(format!("{tag}a")), parse(format!("{tag}b")))
}

/// The untimed part of a round: one message in the worker's conversation, from the partner
/// (`mark_read`) or from the worker's user (`recall`, `edit`).
pub fn prepare(ctx: &Arc<Ctx>, change: Change, reference: bool) -> (Op, Slots) {
    let slots: Slots = Arc::default();
    let kept = slots.clone();
    let op = ctx.op(move |ctx, w, _| {
        let slots = slots.clone();
        async move {
            let (me, partner) = users(&ctx, change, reference, w);
            let sender = if change == Change::MarkRead {
                partner.clone()
            } else {
                me.clone()
            };
            let message = NewMessage {
                conversation: Conversation::peer(me, partner),
                sender,
                kind: MessageKind::Text,
                body: BODY.to_vec(),
                attributes: Default::default(),
                client_msg_id: format!(
                    "{}-organise-{}",
                    ctx.nonce,
                    ctx.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ),
            };
            let outcome = ctx
                .store
                .append(std::slice::from_ref(&message), now_ms())
                .await
                .map_err(db_error)?;
            let stored = &outcome.first().ok_or("nothing appended")?.message;
            slots.lock().unwrap_or_else(|p| p.into_inner()).insert(
                w,
                Appended {
                    key: stored.conversation.key(),
                    seq: stored.seq,
                    msg_id: stored.msg_id.to_string(),
                },
            );
            Ok(Done::items(1))
        }
    });
    (op, kept)
}

fn last(slots: &Slots, w: usize) -> Result<Appended, String> {
    slots
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&w)
        .cloned()
        .ok_or_else(|| "the round's append is missing".to_owned())
}

/// The timed call through the service, on the message the round appended.
pub fn service(ctx: &Arc<Ctx>, change: Change, slots: Slots) -> Op {
    ctx.op(move |ctx, w, _| {
        let slots = slots.clone();
        async move {
            let m = last(&slots, w)?;
            let (me, partner) = users(&ctx, change, false, w);
            let conversation = Some(ConversationRef {
                r#type: 1,
                id: partner.to_string(),
            });
            let client = &ctx.clients[w % ctx.clients.len()];
            match change {
                Change::MarkRead => {
                    let request = cpb::MarkReadRequest {
                        conversation,
                        msg_id: m.msg_id.clone(),
                    };
                    let read = client
                        .conversations()
                        .mark_read(as_user(request, me.as_str())?)
                        .await
                        .map_err(status)?
                        .into_inner();
                    if read.read_seq != m.seq || read.unread_count != 0 {
                        return Err(format!(
                            "MarkRead to seq {} answered read_seq {}, unread {}",
                            m.seq, read.read_seq, read.unread_count
                        ));
                    }
                }
                Change::Recall => {
                    let request = hpb::RecallMessageRequest {
                        conversation,
                        msg_id: m.msg_id.clone(),
                    };
                    client
                        .history()
                        .recall_message(as_user(request, me.as_str())?)
                        .await
                        .map_err(status)?;
                }
                Change::Edit => {
                    let request = hpb::EditMessageRequest {
                        conversation,
                        msg_id: m.msg_id.clone(),
                        body: b"edited".to_vec(),
                        attributes: Default::default(),
                    };
                    let edited = client
                        .history()
                        .edit_message(as_user(request, me.as_str())?)
                        .await
                        .map_err(status)?
                        .into_inner();
                    if edited.message.map(|m| m.edit_version) != Some(1) {
                        return Err("the edit did not answer version 1".into());
                    }
                }
            }
            Ok(Done::items(1))
        }
    })
}

/// The ceiling's timed part: the raw single-row UPDATE of what the call changes.
pub fn raw_update(ctx: &Arc<Ctx>, change: Change, slots: Slots) -> Op {
    ctx.op(move |ctx, w, _| {
        let slots = slots.clone();
        async move {
            let m = last(&slots, w)?;
            let c = ctx.pool.get().await.map_err(db_error)?;
            let changed = match change {
                Change::MarkRead => {
                    let (me, _) = users(&ctx, change, true, w);
                    let stmt = c
                        .prepare_cached(
                            "UPDATE user_conversations SET read_seq = $3 \
                             WHERE conv_key = $1 AND user_id = $2",
                        )
                        .await
                        .map_err(db_error)?;
                    c.execute(&stmt, &[&m.key, &me.as_str(), &m.seq]).await
                }
                Change::Recall => {
                    let stmt = c
                        .prepare_cached(
                            "UPDATE messages SET recalled = true, body = '', attributes = '{}' \
                             WHERE conv_key = $1 AND seq = $2",
                        )
                        .await
                        .map_err(db_error)?;
                    c.execute(&stmt, &[&m.key, &m.seq]).await
                }
                Change::Edit => {
                    let stmt = c
                        .prepare_cached(
                            "UPDATE messages SET body = $3, edit_version = edit_version + 1, \
                             edited_at_ms = $4 WHERE conv_key = $1 AND seq = $2",
                        )
                        .await
                        .map_err(db_error)?;
                    let body: &[u8] = b"edited";
                    c.execute(&stmt, &[&m.key, &m.seq, &body, &now_ms()]).await
                }
            }
            .map_err(db_error)?;
            if changed != 1 {
                return Err(format!("the raw UPDATE changed {changed} rows"));
            }
            Ok(Done::items(1))
        }
    })
}

/// One list page of the light (`heavy = false`) or heavy user, issued directly: with the read
/// state (`with_state`) or without.
pub fn list_statement(ctx: &Arc<Ctx>, heavy: bool, with_state: bool) -> Op {
    ctx.op(move |ctx, w, i| async move {
        let users = list_users(&ctx, heavy);
        if users.is_empty() {
            return Err("no such users in this workload".into());
        }
        let user = &users[(ctx.h(w, i, 31) % users.len() as u64) as usize];
        let text = roaming_store::sql::list_reference(ctx.store.layout(), with_state);
        let c = ctx.pool.get().await.map_err(db_error)?;
        let stmt = c
            .prepare_typed_cached(text, &roaming_store::sql::LIST_PARAMETERS)
            .await
            .map_err(db_error)?;
        let rows = c
            .query(&stmt, &list_parameters(user).as_refs())
            .await
            .map_err(db_error)?;
        if rows.is_empty() {
            return Err(format!("{user}'s list is empty"));
        }
        Ok(Done::items(rows.len() as u64))
    })
}

/// The list page's parameters for `user`: PEER and GROUP, the default window, the first page
/// (with one row more, as the store asks), any mark, the default cap.
struct ListParameters<'a> {
    user: &'a str,
    kinds: Vec<i16>,
    since: i64,
    after_time: i64,
    after_key: &'static str,
    fetch: i64,
    mark: &'static str,
    cap: i64,
}

fn list_parameters(user: &str) -> ListParameters<'_> {
    ListParameters {
        user,
        kinds: vec![1, 2],
        since: now_ms() - 7 * 24 * 3600 * 1000,
        after_time: i64::MAX,
        after_key: "",
        fetch: i64::from(crate::scenarios::LIST_PAGE) + 1,
        mark: "",
        cap: roaming_conversation::ReadSettings::DEFAULT.max_unread_count,
    }
}

impl ListParameters<'_> {
    fn as_refs(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 8] {
        [
            &self.user,
            &self.kinds,
            &self.since,
            &self.after_time,
            &self.after_key,
            &self.fetch,
            &self.mark,
            &self.cap,
        ]
    }
}

/// The unread counts of the first list page of the first light and heavy user (how much
/// the counts had to count), as `(name, entries, sum, max)`.
pub async fn unread_profile(ctx: &Ctx) -> anyhow::Result<Vec<(String, usize, i64, i64)>> {
    let mut out = Vec::new();
    for (name, heavy) in LIST_SCENARIOS {
        let Some(user) = list_users(ctx, heavy).first() else {
            continue;
        };
        let c = ctx.pool.get().await?;
        let stmt = c
            .prepare_typed_cached(
                roaming_store::sql::list_statement(ctx.store.layout(), false),
                &roaming_store::sql::LIST_PARAMETERS,
            )
            .await?;
        let rows = c.query(&stmt, &list_parameters(user).as_refs()).await?;
        let counts: Vec<i64> = rows.iter().map(|r| r.get("unread_count")).collect();
        out.push((
            name.to_owned(),
            counts.len(),
            counts.iter().sum(),
            counts.iter().copied().max().unwrap_or(0),
        ));
    }
    Ok(out)
}
