//! One-way removals: by message ids (RemoveMessages) and by time (RemoveMessagesBefore).

use roaming_domain::{Conversation, FieldError, Limits, MsgId, UserId};
use roaming_proto::history::v1 as pb;
use roaming_runtime::{ApiError, Caller, convert, trace};
use roaming_store::{RemovalStatus, Store};

/// A validated RemoveMessages call.
#[derive(Debug, Clone)]
pub struct RemoveIds {
    user: UserId,
    conversation: Conversation,
    /// The ids as the caller wrote them (answered back verbatim), with their parsed form.
    ids: Vec<(String, MsgId)>,
}

impl RemoveIds {
    /// Checks the acting user, the conversation and the ids (1..=max, each a decimal id).
    pub fn parse(
        req: pb::RemoveMessagesRequest,
        caller: &Caller,
        limits: &Limits,
    ) -> Result<Self, ApiError> {
        let user = caller.user()?;
        let conversation = convert::conversation("conversation", req.conversation.as_ref(), &user)?;
        if req.msg_ids.is_empty() {
            return Err(FieldError::new("msg_ids", "needs at least 1 id").into());
        }
        if req.msg_ids.len() > limits.max_removal_ids {
            return Err(FieldError::new(
                "msg_ids",
                format!(
                    "has {} ids; at most {} per call",
                    req.msg_ids.len(),
                    limits.max_removal_ids
                ),
            )
            .into());
        }
        let ids = req
            .msg_ids
            .into_iter()
            .enumerate()
            .map(|(i, text)| {
                let id = MsgId::parse(&format!("msg_ids[{i}]"), &text)?;
                Ok((text, id))
            })
            .collect::<Result<_, FieldError>>()?;
        Ok(Self {
            user,
            conversation,
            ids,
        })
    }

    /// Hides the messages from the user and reports a status per id, in request order.
    pub(crate) async fn execute(
        self,
        store: &Store,
    ) -> Result<pb::RemoveMessagesResponse, ApiError> {
        trace::record_conversation(&self.conversation);
        let ids: Vec<MsgId> = self.ids.iter().map(|(_, id)| *id).collect();
        let statuses = store
            .remove_messages(&self.user, &self.conversation, &ids)
            .await?;
        let results = self
            .ids
            .into_iter()
            .map(|(text, id)| pb::RemovalResult {
                msg_id: text,
                status: match statuses.get(&id) {
                    Some(RemovalStatus::Removed) => pb::RemovalStatus::Removed,
                    Some(RemovalStatus::AlreadyRemoved) => pb::RemovalStatus::AlreadyRemoved,
                    Some(RemovalStatus::NotFound) | None => pb::RemovalStatus::NotFound,
                } as i32,
            })
            .collect();
        Ok(pb::RemoveMessagesResponse { results })
    }
}

/// A validated RemoveMessagesBefore call.
#[derive(Debug, Clone)]
pub struct RemoveBefore {
    user: UserId,
    conversation: Conversation,
    before_time_ms: i64,
}

impl RemoveBefore {
    /// Checks the acting user, the conversation and the time.
    pub fn parse(req: pb::RemoveMessagesBeforeRequest, caller: &Caller) -> Result<Self, ApiError> {
        let user = caller.user()?;
        let conversation = convert::conversation("conversation", req.conversation.as_ref(), &user)?;
        if req.before_time_ms < 0 {
            return Err(ApiError::invalid("before_time_ms", "must not be negative"));
        }
        Ok(Self {
            user,
            conversation,
            before_time_ms: req.before_time_ms,
        })
    }

    /// Hides from the user every message stored at or before the time.
    pub(crate) async fn execute(
        self,
        store: &Store,
    ) -> Result<pb::RemoveMessagesBeforeResponse, ApiError> {
        trace::record_conversation(&self.conversation);
        store
            .remove_messages_before(&self.user, &self.conversation, self.before_time_ms)
            .await?;
        Ok(pb::RemoveMessagesBeforeResponse {})
    }
}
