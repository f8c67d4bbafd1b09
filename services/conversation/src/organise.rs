//! MarkRead, PinConversation and MarkConversation: the caller's read marker and organisation
//! of one conversation (all user-scoped; every device of the caller learns them by sync).

use crate::list::ReadSettings;
use roaming_domain::{Conversation, Mark, MsgId, UserId};
use roaming_proto::conversation::v1 as pb;
use roaming_runtime::{ApiError, Caller, convert, trace};
use roaming_store::{Organised, Store};
use std::collections::BTreeSet;

/// A validated MarkRead call.
#[derive(Debug, Clone)]
pub struct MarkRead {
    user: UserId,
    conversation: Conversation,
    msg_id: Option<MsgId>,
}

impl MarkRead {
    /// Checks the acting user, the conversation and the id (empty: up to the newest).
    pub fn parse(req: &pb::MarkReadRequest, caller: &Caller) -> Result<Self, ApiError> {
        let user = caller.user()?;
        let conversation = convert::conversation("conversation", req.conversation.as_ref(), &user)?;
        let msg_id = match req.msg_id.as_str() {
            "" => None,
            text => Some(MsgId::parse("msg_id", text)?),
        };
        Ok(Self {
            user,
            conversation,
            msg_id,
        })
    }

    pub(crate) async fn execute(
        self,
        store: &Store,
        settings: ReadSettings,
    ) -> Result<pb::MarkReadResponse, ApiError> {
        trace::record_conversation(&self.conversation);
        let marker = store
            .mark_read(
                &self.user,
                &self.conversation,
                self.msg_id,
                settings.max_unread_count,
            )
            .await?;
        Ok(pb::MarkReadResponse {
            read_seq: marker.read_seq,
            unread_count: marker.unread_count,
        })
    }
}

/// A validated PinConversation call.
#[derive(Debug, Clone)]
pub struct Pin {
    user: UserId,
    conversation: Conversation,
    pinned: bool,
}

impl Pin {
    /// Checks the acting user and the conversation.
    pub fn parse(req: &pb::PinConversationRequest, caller: &Caller) -> Result<Self, ApiError> {
        let user = caller.user()?;
        let conversation = convert::conversation("conversation", req.conversation.as_ref(), &user)?;
        Ok(Self {
            user,
            conversation,
            pinned: req.pinned,
        })
    }

    pub(crate) async fn execute(
        self,
        store: &Store,
        settings: ReadSettings,
        now_ms: i64,
    ) -> Result<pb::PinConversationResponse, ApiError> {
        trace::record_conversation(&self.conversation);
        match store
            .pin(
                &self.user,
                &self.conversation,
                self.pinned,
                now_ms,
                settings.max_pinned,
            )
            .await?
        {
            Organised::Done { pinned_at_ms } => Ok(pb::PinConversationResponse {
                pinned_at_ms: pinned_at_ms.unwrap_or(0),
            }),
            Organised::LimitReached => Err(ApiError::FailedPrecondition(format!(
                "{} conversations are pinned already, the most a user may pin; unpin one first",
                settings.max_pinned
            ))),
        }
    }
}

/// A validated MarkConversation call.
#[derive(Debug, Clone)]
pub struct MarkConversation {
    user: UserId,
    conversation: Conversation,
    add: Vec<String>,
    remove: Vec<String>,
}

/// Most marks one request may name in either list (a request naming more could never fit).
const MAX_MARKS_PER_LIST: usize = 100;

impl MarkConversation {
    /// Checks the acting user, the conversation and every mark; one mark in both lists is
    /// refused.
    pub fn parse(req: &pb::MarkConversationRequest, caller: &Caller) -> Result<Self, ApiError> {
        let user = caller.user()?;
        let conversation = convert::conversation("conversation", req.conversation.as_ref(), &user)?;
        let marks = |field: &str, values: &[String]| -> Result<BTreeSet<Mark>, ApiError> {
            if values.len() > MAX_MARKS_PER_LIST {
                return Err(ApiError::invalid(
                    field,
                    format!("has {} entries; at most {MAX_MARKS_PER_LIST}", values.len()),
                ));
            }
            values
                .iter()
                .enumerate()
                .map(|(i, v)| Mark::parse(&format!("{field}[{i}]"), v).map_err(ApiError::from))
                .collect()
        };
        let add = marks("add_marks", &req.add_marks)?;
        let remove = marks("remove_marks", &req.remove_marks)?;
        if let Some(both) = add.intersection(&remove).next() {
            return Err(ApiError::invalid(
                "remove_marks",
                format!("names {:?}, which add_marks names too", both.as_str()),
            ));
        }
        let text = |set: BTreeSet<Mark>| set.into_iter().map(|m| m.as_str().to_owned()).collect();
        Ok(Self {
            user,
            conversation,
            add: text(add),
            remove: text(remove),
        })
    }

    pub(crate) async fn execute(
        self,
        store: &Store,
        settings: ReadSettings,
    ) -> Result<pb::MarkConversationResponse, ApiError> {
        trace::record_conversation(&self.conversation);
        match store
            .mark(
                &self.user,
                &self.conversation,
                &self.add,
                &self.remove,
                settings.max_marks,
            )
            .await?
        {
            Some(marks) => Ok(pb::MarkConversationResponse { marks }),
            None => Err(ApiError::FailedPrecondition(format!(
                "a conversation carries at most {} marks; remove some first",
                settings.max_marks
            ))),
        }
    }
}
