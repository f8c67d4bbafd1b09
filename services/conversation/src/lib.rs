//! The conversation service: `roaming.conversation.v1.ConversationService` over the store.

mod cursor;
mod requests;
mod service;

pub use service::{ConversationService, ListSettings};

/// Request validation and cursor decoding as pure functions, for the reliability suite's
/// property tests and the fuzz targets (`fuzz/`). Each `validate_*` runs exactly the checks
/// the RPC handler runs before it reaches the store, in the handler's order, and returns the
/// status the handler would; nothing here reads or writes anything.
#[doc(hidden)]
pub mod fuzzing {
    use crate::cursor::ListCursor;
    use crate::requests::{self, ListDefaults};
    use roaming_proto::conversation::v1 as pb;
    use roaming_runtime::{ApiError, Caller, CursorSealer, convert};
    use roaming_store::Limits;
    use tonic::Status;

    /// ListConversations up to the store: the acting user, then the request and its cursor.
    pub fn validate_list(
        req: &pb::ListConversationsRequest,
        caller: &Caller,
        defaults: ListDefaults,
        limits: &Limits,
        sealer: &CursorSealer,
        now_ms: i64,
    ) -> Result<(), Status> {
        caller.user()?;
        requests::list_query(req, defaults, limits, sealer, now_ms)?;
        Ok(())
    }

    /// The cursor the server hands out after a page of `req` whose last entry is
    /// `(last_activity_ms, key)` (the request must be valid).
    pub fn list_cursor(
        req: &pb::ListConversationsRequest,
        defaults: ListDefaults,
        limits: &Limits,
        sealer: &CursorSealer,
        now_ms: i64,
        last_activity_ms: i64,
        key: &str,
    ) -> Result<String, Status> {
        let (query, kinds) = requests::list_query(req, defaults, limits, sealer, now_ms)?;
        Ok(ListCursor {
            kinds,
            active_since_ms: query.active_since_ms,
            last_activity_ms,
            key: key.to_owned(),
        }
        .seal(sealer))
    }

    /// RemoveConversation up to the store: the scope, the role it needs, the acting user
    /// (none for a service purging a group for everyone), the conversation.
    pub fn validate_remove_conversation(
        req: &pb::RemoveConversationRequest,
        caller: &Caller,
    ) -> Result<(), Status> {
        crate::service::removal_target(caller, req)?;
        Ok(())
    }

    /// AddMembers up to the store: the role, the group, the user ids.
    pub fn validate_add_members(
        req: &pb::AddMembersRequest,
        caller: &Caller,
        limits: &Limits,
    ) -> Result<(), Status> {
        caller.require_service("AddMembers")?;
        crate::service::group(req.conversation.as_ref())?;
        convert::user_ids("user_ids", &req.user_ids, limits.max_members_per_call)
            .map_err(ApiError::from)?;
        Ok(())
    }

    /// RemoveMembers up to the store: the role, the group, the user ids.
    pub fn validate_remove_members(
        req: &pb::RemoveMembersRequest,
        caller: &Caller,
        limits: &Limits,
    ) -> Result<(), Status> {
        caller.require_service("RemoveMembers")?;
        crate::service::group(req.conversation.as_ref())?;
        convert::user_ids("user_ids", &req.user_ids, limits.max_members_per_call)
            .map_err(ApiError::from)?;
        Ok(())
    }

    /// Decodes a list cursor as ListConversations does (MAC, then payload).
    pub fn open_cursor(sealer: &CursorSealer, text: &str) -> Result<(), Status> {
        ListCursor::open(sealer, text)?;
        Ok(())
    }
}
