//! Request validation for the conversation service.

use crate::cursor::ListCursor;
use roaming_proto::conversation::v1 as pb;
use roaming_runtime::cursor::fingerprint;
use roaming_runtime::{ApiError, CursorSealer};
use roaming_store::{ConversationKind, Limits, ListQuery, RemovalScope};

/// What ListConversations defaults to (server settings).
#[derive(Debug, Clone, Copy)]
pub struct ListDefaults {
    /// Page size when the request says 0.
    pub page_size: u32,
    /// The activity window when `active_since_ms` is 0, in milliseconds.
    pub window_ms: i64,
}

/// A validated ListConversations request, with the fingerprint of its kinds.
pub(crate) fn list_query(
    req: &pb::ListConversationsRequest,
    defaults: ListDefaults,
    limits: &Limits,
    sealer: &CursorSealer,
    now_ms: i64,
) -> Result<(ListQuery, [u8; 8]), ApiError> {
    let limit = match req.page_size {
        0 => defaults.page_size.min(limits.max_conversation_page),
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
    let mut numbers: Vec<u8> = kinds.iter().map(|k| k.as_i16() as u8).collect();
    numbers.sort_unstable();
    let kinds_fp = fingerprint(&[b"kinds", &numbers]);

    let mut active_since_ms = if req.active_since_ms == 0 {
        now_ms.saturating_sub(defaults.window_ms)
    } else {
        req.active_since_ms
    };
    let mut after = None;
    if !req.cursor.is_empty() {
        let cursor = ListCursor::open(sealer, &req.cursor)?;
        if cursor.kinds != kinds_fp {
            return Err(ApiError::invalid("cursor", "was made for other types"));
        }
        if req.active_since_ms != 0 && req.active_since_ms != cursor.active_since_ms {
            return Err(ApiError::invalid(
                "cursor",
                "was made for another active_since_ms",
            ));
        }
        // The window is the first page's, so later pages neither gain nor lose entries as
        // the clock moves.
        active_since_ms = cursor.active_since_ms;
        after = Some((cursor.last_activity_ms, cursor.key));
    }
    Ok((
        ListQuery {
            kinds,
            active_since_ms,
            after,
            limit,
        },
        kinds_fp,
    ))
}

/// The removal scope; UNSPECIFIED means FOR_ME.
pub(crate) fn scope(value: i32) -> Result<RemovalScope, ApiError> {
    match value {
        0 | 1 => Ok(RemovalScope::ForMe),
        2 => Ok(RemovalScope::ForEveryone),
        other => Err(ApiError::invalid(
            "scope",
            format!("unknown removal scope {other}"),
        )),
    }
}
