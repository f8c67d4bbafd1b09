//! RecallMessage and EditMessage: the sender (through the gateway's service token) changes a
//! stored message for everybody.

use crate::append::check_content;
use roaming_domain::{Conversation, Limits, MsgId, UserId};
use roaming_proto::history::v1 as pb;
use roaming_runtime::{ApiError, Caller, convert, trace};
use roaming_store::{ChangeRules, Store};
use std::collections::HashMap;
use std::time::Duration;

/// Recall and edit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeSettings {
    /// How long after storage a message may be recalled.
    pub recall_window: Duration,
    /// Most edits of one message.
    pub max_edits: u32,
}

impl ChangeSettings {
    /// The defaults: 2 minutes to recall, 10 edits.
    pub const DEFAULT: ChangeSettings = ChangeSettings {
        recall_window: Duration::from_secs(120),
        max_edits: 10,
    };

    fn rules(self) -> ChangeRules {
        ChangeRules {
            recall_window_ms: i64::try_from(self.recall_window.as_millis()).unwrap_or(i64::MAX),
            max_edits: self.max_edits,
        }
    }
}

impl Default for ChangeSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Who and what a recall or an edit names.
#[derive(Debug, Clone)]
struct Target {
    caller: Caller,
    sender: UserId,
    conversation: Conversation,
    msg_id: MsgId,
}

impl Target {
    fn parse(
        rpc: &str,
        conversation: Option<&roaming_proto::common::v1::ConversationRef>,
        msg_id: &str,
        caller: &Caller,
    ) -> Result<Self, ApiError> {
        caller.require_service(rpc)?;
        let sender = caller.user()?;
        let conversation = convert::conversation("conversation", conversation, &sender)?;
        let msg_id = MsgId::parse("msg_id", msg_id)?;
        Ok(Self {
            caller: caller.clone(),
            sender,
            conversation,
            msg_id,
        })
    }
}

/// A validated RecallMessage call.
#[derive(Debug, Clone)]
pub struct Recall(Target);

impl Recall {
    /// Checks the role, the acting user (the sender), the conversation and the id.
    pub fn parse(req: &pb::RecallMessageRequest, caller: &Caller) -> Result<Self, ApiError> {
        Target::parse(
            "RecallMessage",
            req.conversation.as_ref(),
            &req.msg_id,
            caller,
        )
        .map(Self)
    }

    pub(crate) async fn execute(
        self,
        store: &Store,
        settings: ChangeSettings,
        now_ms: i64,
    ) -> Result<pb::RecallMessageResponse, ApiError> {
        let t = self.0;
        trace::record_conversation(&t.conversation);
        store
            .recall(
                &t.sender,
                &t.conversation,
                t.msg_id,
                now_ms,
                settings.rules(),
            )
            .await?;
        trace::audit(&t.caller, "recall", &t.conversation, 1);
        Ok(pb::RecallMessageResponse {})
    }
}

/// A validated EditMessage call.
#[derive(Debug, Clone)]
pub struct Edit {
    target: Target,
    body: Vec<u8>,
    attributes: HashMap<String, String>,
}

impl Edit {
    /// Checks the role, the acting user (the sender), the conversation, the id and the new
    /// content (the limits of a new message).
    pub fn parse(
        req: pb::EditMessageRequest,
        caller: &Caller,
        limits: &Limits,
    ) -> Result<Self, ApiError> {
        let target = Target::parse(
            "EditMessage",
            req.conversation.as_ref(),
            &req.msg_id,
            caller,
        )?;
        check_content(
            &|name: &str| name.to_owned(),
            &req.body,
            &req.attributes,
            limits,
        )?;
        Ok(Self {
            target,
            body: req.body,
            attributes: req.attributes,
        })
    }

    pub(crate) async fn execute(
        self,
        store: &Store,
        settings: ChangeSettings,
        now_ms: i64,
    ) -> Result<pb::EditMessageResponse, ApiError> {
        let t = &self.target;
        trace::record_conversation(&t.conversation);
        let message = store
            .edit(
                &t.sender,
                &t.conversation,
                t.msg_id,
                &self.body,
                &self.attributes,
                now_ms,
                settings.rules(),
            )
            .await?;
        trace::audit(&t.caller, "edit", &t.conversation, 1);
        Ok(pb::EditMessageResponse {
            message: Some(convert::message(message, &t.sender)),
        })
    }
}
