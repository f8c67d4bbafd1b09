//! AppendMessages: parse a batch whole (every field of every message), then store it.

use roaming_domain::{
    Conversation, ConversationKind, FieldError, Limits, MessageKind, NewMessage, UserId, quote,
};
use roaming_proto::history::v1 as pb;
use roaming_runtime::{ApiError, Caller, convert, trace};
use roaming_store::Store;
use std::collections::BTreeMap;

/// Longest `client_msg_id`, in characters.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;

/// A validated AppendMessages call.
#[derive(Debug, Clone)]
pub struct Append {
    caller: Caller,
    batch: Vec<NewMessage>,
}

impl Append {
    /// Checks the caller's role, then the whole batch; nothing is written for a bad one.
    pub fn parse(
        req: pb::AppendMessagesRequest,
        caller: &Caller,
        limits: &Limits,
    ) -> Result<Self, ApiError> {
        caller.require_service("AppendMessages")?;
        let n = req.messages.len();
        if n == 0 {
            return Err(ApiError::invalid("messages", "needs at least 1 message"));
        }
        if n > limits.max_append_batch {
            return Err(ApiError::invalid(
                "messages",
                format!(
                    "has {n} messages; at most {} per call",
                    limits.max_append_batch
                ),
            ));
        }
        let batch = req
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| new_message(i, m, limits))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            caller: caller.clone(),
            batch,
        })
    }

    /// Stores the batch at server time `now_ms`.
    pub(crate) async fn execute(
        self,
        store: &Store,
        now_ms: i64,
    ) -> Result<pb::AppendMessagesResponse, ApiError> {
        if let Some(first) = self.batch.first() {
            trace::record_conversation(&first.conversation);
        }
        let outcomes = store.append(&self.batch, now_ms).await?;
        let duplicates = outcomes.iter().filter(|o| o.duplicate).count();
        let stored = outcomes.len() - duplicates;
        metrics::counter!(roaming_runtime::metrics::APPENDED).increment(stored as u64);
        metrics::counter!(roaming_runtime::metrics::DUPLICATES).increment(duplicates as u64);
        // One audit line per conversation written to, with the number of messages stored.
        let mut written: BTreeMap<String, (&Conversation, usize)> = BTreeMap::new();
        for (m, o) in self.batch.iter().zip(&outcomes) {
            if !o.duplicate {
                written
                    .entry(m.conversation.key())
                    .or_insert((&m.conversation, 0))
                    .1 += 1;
            }
        }
        for (conversation, count) in written.into_values() {
            trace::audit(&self.caller, "append", conversation, count);
        }
        let results = outcomes
            .into_iter()
            .zip(&self.batch)
            .map(|(o, m)| pb::AppendResult {
                message: Some(convert::message(o.message, &m.sender)),
                duplicate: o.duplicate,
            })
            .collect();
        Ok(pb::AppendMessagesResponse { results })
    }
}

fn new_message(i: usize, m: pb::NewMessage, limits: &Limits) -> Result<NewMessage, FieldError> {
    let f = |name: &str| format!("messages[{i}].{name}");
    let kind = ConversationKind::from_i32(&f("conversation_type"), m.conversation_type)?;
    let sender = UserId::parse(&f("sender"), &m.sender)?;
    let conversation = Conversation::parse(&f("recipient"), kind, &m.recipient, &sender)?;
    // An unset type is a text message, as in the SDKs; an unknown one is an error.
    let message_kind = match m.r#type {
        0 => MessageKind::Text,
        t => MessageKind::from_i32(&f("type"), t)?,
    };
    check_content(&f, &m.body, &m.attributes, limits)?;
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
    Ok(NewMessage {
        conversation,
        sender,
        kind: message_kind,
        body: m.body,
        attributes: m.attributes,
        client_msg_id: m.client_msg_id,
    })
}

/// The shape rules of a message's content, for a new message and an edit alike: the body's
/// size, and the attributes' count, keys and values. `f` names a field (`body`,
/// `attributes`) as the request does.
pub(crate) fn check_content(
    f: &dyn Fn(&str) -> String,
    body: &[u8],
    attributes: &std::collections::HashMap<String, String>,
    limits: &Limits,
) -> Result<(), FieldError> {
    if body.len() > limits.max_body_bytes {
        return Err(FieldError::new(
            f("body"),
            format!("is {} bytes; at most {}", body.len(), limits.max_body_bytes),
        ));
    }
    if attributes.len() > limits.max_attributes {
        return Err(FieldError::new(
            f("attributes"),
            format!(
                "has {} entries; at most {}",
                attributes.len(),
                limits.max_attributes
            ),
        ));
    }
    for (k, v) in attributes {
        if k.is_empty() {
            return Err(FieldError::new(f("attributes"), "keys must not be empty"));
        }
        // PostgreSQL text and jsonb cannot hold NUL: refuse it here rather than fail the
        // insert with an internal error.
        if k.contains('\0') || v.contains('\0') {
            return Err(FieldError::new(
                format!("{}[{}]", f("attributes"), quote(k)),
                "keys and values must not contain NUL (U+0000)",
            ));
        }
        if k.len() > limits.max_attribute_bytes || v.len() > limits.max_attribute_bytes {
            return Err(FieldError::new(
                format!("{}[{}]", f("attributes"), quote(k)),
                format!(
                    "keys and values are at most {} bytes",
                    limits.max_attribute_bytes
                ),
            ));
        }
    }
    Ok(())
}
