//! SyncConversations: parse the request (page size, token against its user and the change
//! retention), then stream the caller's feed page by page, each page with a token that
//! resumes right after it.

use crate::sync_token::{Stamp, SyncToken, user_fingerprint};
use futures::Stream;
use roaming_domain::UserId;
use roaming_proto::conversation::v1 as pb;
use roaming_runtime::{ApiError, Caller, CursorSealer, convert};
use roaming_store::{ConversationState, Store, SyncQuery};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// Changes per page when the request says 0.
pub const DEFAULT_SYNC_PAGE: u32 = 50;
/// Largest page.
pub const MAX_SYNC_PAGE: u32 = 100;

/// The feed's server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    /// How old a token may be (from the snapshot it is relative to) before a device must
    /// start again from a snapshot.
    pub retention: Duration,
}

impl SyncSettings {
    /// The defaults: 30 days of retention.
    pub const DEFAULT: SyncSettings = SyncSettings {
        retention: Duration::from_secs(30 * 24 * 3600),
    };
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A validated SyncConversations call.
#[derive(Debug, Clone)]
pub struct Sync {
    user: UserId,
    limit: u32,
    unread_cap: i64,
    token: SyncToken,
}

impl Sync {
    /// Checks the acting user, the page size and the token (its seal, its user, its age
    /// against `now_ms`).
    pub fn parse(
        req: &pb::SyncConversationsRequest,
        caller: &Caller,
        settings: SyncSettings,
        read: crate::ReadSettings,
        sealer: &CursorSealer,
        now_ms: i64,
    ) -> Result<Self, ApiError> {
        let user = caller.user()?;
        let limit = match req.page_size {
            0 => DEFAULT_SYNC_PAGE,
            n if n > MAX_SYNC_PAGE => {
                return Err(ApiError::invalid(
                    "page_size",
                    format!("must be at most {MAX_SYNC_PAGE}"),
                ));
            }
            n => n,
        };
        let token = if req.sync_token.is_empty() {
            SyncToken {
                user: user_fingerprint(&user),
                since: None,
                call: None,
            }
        } else {
            SyncToken::open(sealer, &req.sync_token, &user)?
        };
        // The age that matters is that of the oldest snapshot the token still relies on.
        let relied_on = token
            .since
            .as_ref()
            .or(token.call.as_ref().map(|(target, _, _)| target));
        if let Some(stamp) = relied_on {
            let retention_ms = i64::try_from(settings.retention.as_millis()).unwrap_or(i64::MAX);
            if now_ms.saturating_sub(stamp.at_ms) > retention_ms {
                return Err(ApiError::FailedPrecondition(format!(
                    "sync_token is older than the server's change retention ({}); sync again \
                     without a token (a snapshot) and replace the local copy",
                    humanize(settings.retention)
                )));
            }
        }
        Ok(Self {
            user,
            limit,
            unread_cap: read.max_unread_count,
            token,
        })
    }

    /// Streams the pages; `now_ms` stamps the snapshot a new call reads first.
    pub(crate) fn execute(
        self,
        store: Store,
        sealer: CursorSealer,
        now_ms: i64,
        shutdown: CancellationToken,
    ) -> impl Stream<Item = Result<pb::SyncConversationsResponse, Status>> + Send + 'static {
        let pager = Pager {
            store,
            sealer,
            sync: self,
            now_ms,
            done: false,
        };
        futures::stream::unfold(pager, move |mut pager| {
            let shutdown = shutdown.clone();
            async move {
                if pager.done {
                    return None;
                }
                let page = tokio::select! {
                    page = pager.next_page() => page,
                    _ = shutdown.cancelled() => Err(ApiError::ShuttingDown),
                };
                match page {
                    Ok(page) => {
                        pager.done = page.is_end;
                        Some((Ok(page), pager))
                    }
                    Err(e) => {
                        pager.done = true;
                        Some((Err(e.into()), pager))
                    }
                }
            }
        })
    }
}

fn humanize(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

struct Pager {
    store: Store,
    sealer: CursorSealer,
    sync: Sync,
    now_ms: i64,
    done: bool,
}

impl Pager {
    async fn next_page(&mut self) -> Result<pb::SyncConversationsResponse, ApiError> {
        let token = &mut self.sync.token;
        let query = SyncQuery {
            since: token.since.as_ref().map(|s| s.snapshot.clone()),
            after: token.call.as_ref().map(|(_, at, key)| (*at, key.clone())),
            limit: self.sync.limit,
            unread_cap: self.sync.unread_cap,
        };
        let page = self.store.sync_page(&self.sync.user, &query).await?;
        // The first page of a call fixes the call's target: everything its snapshot saw is
        // in this call's output or state, and the next call is relative to it.
        let target = match token.call.take() {
            Some((target, _, _)) => target,
            None => Stamp {
                snapshot: page.snapshot.clone(),
                at_ms: self.now_ms,
            },
        };
        let changes: Vec<pb::ConversationChange> = page
            .changes
            .iter()
            .map(|c| change(c, &self.sync.user))
            .collect();
        let is_end = !page.more;
        if is_end {
            token.since = Some(target);
        } else {
            let last = page
                .changes
                .last()
                .expect("a page is never empty while more follow");
            token.call = Some((target, last.last_activity_ms, last.key.clone()));
        }
        Ok(pb::SyncConversationsResponse {
            changes,
            next_sync_token: token.seal(&self.sealer),
            is_end,
        })
    }
}

/// A conversation's state as its change.
fn change(state: &ConversationState, user: &UserId) -> pb::ConversationChange {
    let listed = state.last_message.is_some();
    pb::ConversationChange {
        conversation: Some(convert::conversation_ref(&state.conversation, user)),
        listed,
        last_message: state
            .last_message
            .clone()
            .map(|m| convert::message(m, user)),
        last_activity_ms: if listed { state.last_activity_ms } else { 0 },
        last_seq: state.last_seq,
        hidden_through_seq: state.hidden_through_seq,
        removed_msg_ids: state.removed.iter().map(|id| id.to_string()).collect(),
        recalled_msg_ids: state.recalled.iter().map(|id| id.to_string()).collect(),
        edited_messages: state
            .edited
            .iter()
            .cloned()
            .map(|m| convert::message(m, user))
            .collect(),
        read_seq: state.read.read_seq,
        unread_count: state.read.unread_count,
        peer_read_seq: state.read.peer_read_seq,
        pinned: state.read.pinned_at_ms.is_some(),
        pinned_at_ms: state.read.pinned_at_ms.unwrap_or_default(),
        marks: state.read.marks.clone(),
        is_member: state.is_member,
    }
}
