//! ListConversations: parse the request (page size, window, kinds, cursor), then read one
//! page of the caller's list.

use crate::cursor::{ListCursor, kinds_fingerprint};
use roaming_domain::{ConversationKind, Limits, Mark, UserId};
use roaming_proto::conversation::v1 as pb;
use roaming_runtime::{ApiError, Caller, CursorSealer, convert};
use roaming_store::{ListQuery, Store};
use std::time::Duration;

/// What ListConversations defaults to (server settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListSettings {
    /// Page size when the request says 0.
    pub page_size: u32,
    /// The activity window when `active_since_ms` is 0.
    pub window: Duration,
}

impl ListSettings {
    /// The defaults: 10 conversations active within the last 7 days.
    pub const DEFAULT: ListSettings = ListSettings {
        page_size: 10,
        window: Duration::from_secs(7 * 24 * 3600),
    };
}

impl Default for ListSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Read state and organisation limits (server settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSettings {
    /// Unread counts saturate here.
    pub max_unread_count: i64,
    /// Most pinned conversations per user.
    pub max_pinned: i64,
    /// Most marks per conversation.
    pub max_marks: i64,
}

impl ReadSettings {
    /// The defaults: counts saturate at 999, 50 pins per user, 20 marks per conversation.
    pub const DEFAULT: ReadSettings = ReadSettings {
        max_unread_count: 999,
        max_pinned: 50,
        max_marks: 20,
    };
}

impl Default for ReadSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A validated ListConversations call.
#[derive(Debug, Clone)]
pub struct List {
    user: UserId,
    query: ListQuery,
    /// Encoded size a page stays below.
    max_page_bytes: usize,
    /// Fingerprint of the kinds, for the next cursor.
    kinds: [u8; 8],
}

impl List {
    /// Checks the acting user, the page size, the window, the kinds and the cursor; the
    /// window's start is `now_ms` minus the default window unless the request or its cursor
    /// fixes it.
    pub fn parse(
        req: &pb::ListConversationsRequest,
        caller: &Caller,
        settings: ListSettings,
        read: ReadSettings,
        limits: &Limits,
        sealer: &CursorSealer,
        now_ms: i64,
    ) -> Result<Self, ApiError> {
        let user = caller.user()?;
        let limit = match req.page_size {
            0 => settings.page_size.min(limits.max_conversation_page),
            n if n > limits.max_conversation_page => {
                return Err(ApiError::invalid(
                    "page_size",
                    format!("must be at most {}", limits.max_conversation_page),
                ));
            }
            n => n,
        };
        if req.active_since_ms < 0 {
            return Err(ApiError::invalid("active_since_ms", "must not be negative"));
        }
        let mut kinds = Vec::new();
        for (i, t) in req.types.iter().enumerate() {
            let kind = ConversationKind::from_i32(&format!("types[{i}]"), *t)?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            kinds = vec![ConversationKind::Peer, ConversationKind::Group];
        }
        let mark = match req.mark.as_str() {
            "" => None,
            text => Some(Mark::parse("mark", text)?),
        };
        let kinds_fp = kinds_fingerprint(&kinds, req.pinned_only, mark.as_ref().map(Mark::as_str));
        let window_ms = i64::try_from(settings.window.as_millis()).unwrap_or(i64::MAX);
        let mut active_since_ms = if req.active_since_ms == 0 {
            now_ms.saturating_sub(window_ms)
        } else {
            req.active_since_ms
        };
        let mut after = None;
        if !req.cursor.is_empty() {
            let cursor = ListCursor::resume(sealer, &req.cursor, kinds_fp, req.active_since_ms)?;
            // The window is the first page's, so later pages neither gain nor lose entries as
            // the clock moves.
            active_since_ms = cursor.active_since_ms;
            after = Some((cursor.last_activity_ms, cursor.key));
        }
        Ok(Self {
            user,
            max_page_bytes: limits.max_page_bytes,
            query: ListQuery {
                kinds,
                active_since_ms,
                after,
                limit,
                pinned_only: req.pinned_only,
                mark: mark.map(|m| m.as_str().to_owned()),
                unread_cap: read.max_unread_count,
            },
            kinds: kinds_fp,
        })
    }

    /// The cursor a page of this listing carries when its last entry is
    /// `(last_activity_ms, key)` (pinned-only listings: `(pinned_at_ms, key)`).
    pub fn cursor_after(&self, sealer: &CursorSealer, last_activity_ms: i64, key: &str) -> String {
        ListCursor {
            kinds: self.kinds,
            active_since_ms: self.query.active_since_ms,
            last_activity_ms,
            key: key.to_owned(),
        }
        .seal(sealer)
    }

    /// Reads the page.
    pub(crate) async fn execute(
        self,
        store: &Store,
        sealer: &CursorSealer,
    ) -> Result<pb::ListConversationsResponse, ApiError> {
        let (entries, more) = store.list_conversations(&self.user, &self.query).await?;
        let stored = entries.len();
        let mut conversations = Vec::with_capacity(stored);
        let mut last = None;
        let mut bytes = 0;
        for e in entries {
            let position = if self.query.pinned_only {
                e.read.pinned_at_ms.unwrap_or_default()
            } else {
                e.last_activity_ms
            };
            let entry = pb::Conversation {
                conversation: Some(convert::conversation_ref(&e.conversation, &self.user)),
                last_message: Some(convert::message(e.last_message, &self.user)),
                last_activity_ms: e.last_activity_ms,
                read_seq: e.read.read_seq,
                unread_count: e.read.unread_count,
                peer_read_seq: e.read.peer_read_seq,
                pinned: e.read.pinned_at_ms.is_some(),
                pinned_at_ms: e.read.pinned_at_ms.unwrap_or_default(),
                marks: e.read.marks,
            };
            // The page ends early, with its cursor, before its size passes the budget.
            bytes += convert::repeated_len(&entry);
            if bytes > self.max_page_bytes && !conversations.is_empty() {
                break;
            }
            last = Some((position, e.key));
            conversations.push(entry);
        }
        let more = more || conversations.len() < stored;
        let next_cursor = match last {
            Some((activity, key)) if more => self.cursor_after(sealer, activity, &key),
            _ => String::new(),
        };
        Ok(pb::ListConversationsResponse {
            conversations,
            next_cursor,
        })
    }
}
