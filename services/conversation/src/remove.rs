//! RemoveConversation: one-way for the caller (FOR_ME), or a purge for everyone
//! (FOR_EVERYONE, service tokens only).

use roaming_domain::{Conversation, ConversationKind, UserId};
use roaming_proto::conversation::v1 as pb;
use roaming_runtime::{ApiError, Caller, convert, trace};
use roaming_store::Store;

/// A validated RemoveConversation call.
#[derive(Debug, Clone)]
pub enum RemoveConversation {
    /// Off `user`'s list (and with `delete_messages`, its messages so far hidden from them).
    ForMe {
        user: UserId,
        conversation: Conversation,
        delete_messages: bool,
    },
    /// Off every participant's list (and with `delete_messages`, purged for everyone).
    ForEveryone {
        caller: Caller,
        conversation: Conversation,
        delete_messages: bool,
    },
}

impl RemoveConversation {
    /// Checks the scope, the role it needs, the acting user (none for a service purging a
    /// group for everyone) and the conversation.
    pub fn parse(req: &pb::RemoveConversationRequest, caller: &Caller) -> Result<Self, ApiError> {
        let for_everyone = match req.scope {
            0 | 1 => false,
            2 => true,
            other => {
                return Err(ApiError::invalid(
                    "scope",
                    format!("unknown removal scope {other}"),
                ));
            }
        };
        let delete_messages = req.delete_messages;
        if !for_everyone {
            let user = caller.user()?;
            let conversation =
                convert::conversation("conversation", req.conversation.as_ref(), &user)?;
            return Ok(Self::ForMe {
                user,
                conversation,
                delete_messages,
            });
        }
        caller.require_service("RemoveConversation with REMOVAL_SCOPE_FOR_EVERYONE")?;
        // A service purging a GROUP or CHATROOM names no user: the group id does not depend
        // on who looks at it. A PEER conversation is named by one participant's view of it.
        let names_group = req.conversation.as_ref().is_some_and(|c| {
            c.r#type == ConversationKind::Group as i32
                || c.r#type == ConversationKind::Chatroom as i32
        });
        let conversation = if caller.act_as.is_none() && names_group {
            convert::group("conversation", req.conversation.as_ref())?
        } else {
            let user = caller.user()?;
            convert::conversation("conversation", req.conversation.as_ref(), &user)?
        };
        Ok(Self::ForEveryone {
            caller: caller.clone(),
            conversation,
            delete_messages,
        })
    }

    pub(crate) async fn execute(
        self,
        store: &Store,
    ) -> Result<pb::RemoveConversationResponse, ApiError> {
        match self {
            Self::ForMe {
                user,
                conversation,
                delete_messages,
            } => {
                trace::record_conversation(&conversation);
                store
                    .remove_conversation_for(&user, &conversation, delete_messages)
                    .await?;
            }
            Self::ForEveryone {
                caller,
                conversation,
                delete_messages,
            } => {
                trace::record_conversation(&conversation);
                store
                    .purge_conversation(&conversation, delete_messages)
                    .await?;
                let action = if delete_messages {
                    "purge with messages"
                } else {
                    "purge"
                };
                trace::audit(&caller, action, &conversation, 1);
            }
        }
        Ok(pb::RemoveConversationResponse {})
    }
}
