//! Request validation: every field checked, whole, before anything is read or written.

use crate::cursor::HistoryCursor;
use roaming_proto::history::v1 as pb;
use roaming_runtime::ApiError;
use roaming_runtime::convert;
use roaming_runtime::cursor::fingerprint;
use roaming_store::{
    Conversation, ConversationKind, Direction, FieldError, Limits, MessageKind, MsgId, NewMessage,
    UserId,
};

/// Default history page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Longest `client_msg_id`, in characters.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;

/// A validated AppendMessages batch.
pub(crate) fn append_batch(
    req: pb::AppendMessagesRequest,
    limits: &Limits,
) -> Result<Vec<NewMessage>, FieldError> {
    let n = req.messages.len();
    if n == 0 {
        return Err(FieldError::new("messages", "needs at least 1 message"));
    }
    if n > limits.max_append_batch {
        return Err(FieldError::new(
            "messages",
            format!(
                "has {n} messages; at most {} per call",
                limits.max_append_batch
            ),
        ));
    }
    req.messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| new_message(i, m, limits))
        .collect()
}

fn new_message(i: usize, m: pb::NewMessage, limits: &Limits) -> Result<NewMessage, FieldError> {
    let f = |name: &str| format!("messages[{i}].{name}");
    let kind = ConversationKind::from_i32(&f("conversation_type"), m.conversation_type)?;
    let sender = UserId::parse(&f("sender"), &m.sender)?;
    let recipient = UserId::parse(&f("recipient"), &m.recipient)?;
    // An unset type is a text message, as in the SDKs; an unknown one is an error.
    let message_kind = match m.r#type {
        0 => MessageKind::Text,
        t => MessageKind::from_i32(&f("type"), t)?,
    };
    if m.body.len() > limits.max_body_bytes {
        return Err(FieldError::new(
            f("body"),
            format!(
                "is {} bytes; at most {}",
                m.body.len(),
                limits.max_body_bytes
            ),
        ));
    }
    if m.attributes.len() > limits.max_attributes {
        return Err(FieldError::new(
            f("attributes"),
            format!(
                "has {} entries; at most {}",
                m.attributes.len(),
                limits.max_attributes
            ),
        ));
    }
    for (k, v) in &m.attributes {
        if k.is_empty() {
            return Err(FieldError::new(f("attributes"), "keys must not be empty"));
        }
        // PostgreSQL text and jsonb cannot hold NUL: refuse it here rather than fail the
        // insert with an internal error.
        if k.contains('\0') || v.contains('\0') {
            return Err(FieldError::new(
                format!("{}[{k:?}]", f("attributes")),
                "keys and values must not contain NUL (U+0000)",
            ));
        }
        if k.len() > limits.max_attribute_bytes || v.len() > limits.max_attribute_bytes {
            return Err(FieldError::new(
                format!("{}[{k:?}]", f("attributes")),
                format!(
                    "keys and values are at most {} bytes",
                    limits.max_attribute_bytes
                ),
            ));
        }
    }
    let chars = m.client_msg_id.chars().count();
    if chars == 0 {
        return Err(FieldError::new(f("client_msg_id"), "is required"));
    }
    if chars > MAX_CLIENT_MSG_ID_CHARS {
        return Err(FieldError::new(
            f("client_msg_id"),
            "must be at most 64 characters",
        ));
    }
    if m.client_msg_id.contains('\0') {
        return Err(FieldError::new(
            f("client_msg_id"),
            "must not contain NUL (U+0000)",
        ));
    }
    let conversation = Conversation::of_message(kind, &sender, recipient.clone());
    Ok(NewMessage {
        conversation,
        sender,
        recipient,
        kind: message_kind,
        body: m.body,
        attributes: m.attributes,
        client_msg_id: m.client_msg_id,
    })
}

/// Where a fetch starts.
#[derive(Debug, Clone)]
pub(crate) enum Start {
    /// From the direction's end.
    End,
    /// After this message (to be resolved to a seq).
    Anchor(MsgId),
    /// After this seq (from a cursor).
    Position(i64),
}

/// A validated FetchHistory request.
#[derive(Debug, Clone)]
pub(crate) struct FetchPlan {
    pub conversation: Conversation,
    pub direction: Direction,
    pub start: Start,
    pub page_size: u32,
    pub max_pages: u32,
    pub start_time_ms: Option<i64>,
    pub end_time_ms: Option<i64>,
    pub senders: Vec<String>,
    pub kinds: Vec<i16>,
    /// Fingerprint of the filters, for cursors.
    pub filters: [u8; 8],
}

pub(crate) fn fetch_plan(
    req: pb::FetchHistoryRequest,
    viewer: &UserId,
    limits: &Limits,
    sealer: &roaming_runtime::CursorSealer,
) -> Result<FetchPlan, ApiError> {
    let conversation = convert::conversation("conversation", req.conversation.as_ref(), viewer)?;
    let direction = match req.direction {
        0 | 1 => Direction::Backward,
        2 => Direction::Forward,
        other => {
            return Err(ApiError::invalid(
                "direction",
                format!("unknown direction {other}"),
            ));
        }
    };
    let page_size = match req.page_size {
        0 => DEFAULT_PAGE_SIZE.min(limits.max_page_size),
        n if n > limits.max_page_size => {
            return Err(ApiError::invalid(
                "page_size",
                format!("must be at most {}", limits.max_page_size),
            ));
        }
        n => n,
    };
    let max_pages = match req.max_pages {
        0 => 1,
        n if n > limits.max_pages => {
            return Err(ApiError::invalid(
                "max_pages",
                format!("must be at most {}", limits.max_pages),
            ));
        }
        n => n,
    };
    for (name, value) in [
        ("start_time_ms", req.start_time_ms),
        ("end_time_ms", req.end_time_ms),
    ] {
        if value.is_some_and(|v| v < 0) {
            return Err(ApiError::invalid(name, "must not be negative"));
        }
    }
    if let (Some(s), Some(e)) = (req.start_time_ms, req.end_time_ms) {
        if s > e {
            return Err(ApiError::invalid(
                "start_time_ms",
                "must not be after end_time_ms",
            ));
        }
    }
    if req.senders.len() > limits.max_sender_filter {
        return Err(ApiError::invalid(
            "senders",
            format!(
                "has {} entries; at most {}",
                req.senders.len(),
                limits.max_sender_filter
            ),
        ));
    }
    let mut senders = Vec::with_capacity(req.senders.len());
    for (i, s) in req.senders.iter().enumerate() {
        senders.push(
            UserId::parse(&format!("senders[{i}]"), s)?
                .as_str()
                .to_owned(),
        );
    }
    let mut kinds = Vec::with_capacity(req.types.len());
    for (i, t) in req.types.iter().enumerate() {
        kinds.push(MessageKind::from_i32(&format!("types[{i}]"), *t)?.as_i16());
    }
    senders.sort();
    senders.dedup();
    kinds.sort_unstable();
    kinds.dedup();
    let filters = filter_fingerprint(
        direction,
        req.start_time_ms,
        req.end_time_ms,
        &senders,
        &kinds,
    );

    let start = match (req.start_msg_id.is_empty(), req.cursor.is_empty()) {
        (false, false) => {
            return Err(ApiError::invalid(
                "cursor",
                "cannot be combined with start_msg_id",
            ));
        }
        (false, true) => Start::Anchor(MsgId::parse("start_msg_id", &req.start_msg_id)?),
        (true, false) => {
            let cursor = HistoryCursor::open(sealer, &req.cursor)?;
            if cursor.conversation != HistoryCursor::conversation_fingerprint(&conversation.key()) {
                return Err(ApiError::invalid(
                    "cursor",
                    "was made for another conversation",
                ));
            }
            if cursor.direction != direction {
                return Err(ApiError::invalid(
                    "cursor",
                    "was made for another direction",
                ));
            }
            if cursor.filters != filters {
                return Err(ApiError::invalid("cursor", "was made for other filters"));
            }
            Start::Position(cursor.position)
        }
        (true, true) => Start::End,
    };
    Ok(FetchPlan {
        conversation,
        direction,
        start,
        page_size,
        max_pages,
        start_time_ms: req.start_time_ms,
        end_time_ms: req.end_time_ms,
        senders,
        kinds,
        filters,
    })
}

fn filter_fingerprint(
    direction: Direction,
    start: Option<i64>,
    end: Option<i64>,
    senders: &[String],
    kinds: &[i16],
) -> [u8; 8] {
    let opt = |v: Option<i64>| v.map(|x| x.to_be_bytes().to_vec()).unwrap_or_default();
    let senders = senders.join(",");
    let kinds: Vec<u8> = kinds.iter().flat_map(|k| k.to_be_bytes()).collect();
    let dir = [direction as u8];
    fingerprint(&[&dir, &opt(start), &opt(end), senders.as_bytes(), &kinds])
}

/// A validated RemoveMessages id list (1..=max, each a decimal id).
pub(crate) fn msg_ids(values: &[String], limits: &Limits) -> Result<Vec<MsgId>, FieldError> {
    if values.is_empty() {
        return Err(FieldError::new("msg_ids", "needs at least 1 id"));
    }
    if values.len() > limits.max_removal_ids {
        return Err(FieldError::new(
            "msg_ids",
            format!(
                "has {} ids; at most {} per call",
                values.len(),
                limits.max_removal_ids
            ),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| MsgId::parse(&format!("msg_ids[{i}]"), v))
        .collect()
}
