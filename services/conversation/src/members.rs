//! AddMembers and RemoveMembers: backend callers maintain GROUP and CHATROOM membership.

use roaming_domain::{Conversation, Limits, UserId};
use roaming_proto::common::v1 as common;
use roaming_runtime::{ApiError, Caller, convert, trace};
use roaming_store::Store;

/// Which way a membership call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// AddMembers.
    Add,
    /// RemoveMembers.
    Remove,
}

impl Change {
    fn rpc(self) -> &'static str {
        match self {
            Change::Add => "AddMembers",
            Change::Remove => "RemoveMembers",
        }
    }
}

/// A validated AddMembers or RemoveMembers call.
#[derive(Debug, Clone)]
pub struct Members {
    caller: Caller,
    change: Change,
    conversation: Conversation,
    users: Vec<UserId>,
}

impl Members {
    /// Checks the role, the group (PEER has no membership) and the user ids.
    pub fn parse(
        change: Change,
        conversation: Option<&common::ConversationRef>,
        user_ids: &[String],
        caller: &Caller,
        limits: &Limits,
    ) -> Result<Self, ApiError> {
        caller.require_service(change.rpc())?;
        let conversation = convert::group("conversation", conversation)?;
        let users = convert::user_ids("user_ids", user_ids, limits.max_members_per_call)?;
        Ok(Self {
            caller: caller.clone(),
            change,
            conversation,
            users,
        })
    }

    pub(crate) async fn execute(self, store: &Store) -> Result<(), ApiError> {
        trace::record_conversation(&self.conversation);
        match self.change {
            Change::Add => store.add_members(&self.conversation, &self.users).await?,
            Change::Remove => {
                store
                    .remove_members(&self.conversation, &self.users)
                    .await?
            }
        }
        let action = match self.change {
            Change::Add => "add members",
            Change::Remove => "remove members",
        };
        trace::audit(&self.caller, action, &self.conversation, self.users.len());
        Ok(())
    }
}
