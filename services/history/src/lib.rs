//! The history service: `roaming.history.v1.HistoryService` over the store.

mod cursor;
mod fetch;
mod requests;
mod service;

pub use service::HistoryService;

/// Request validation and cursor decoding as pure functions, for the reliability suite's
/// property tests and the fuzz targets (`fuzz/`). Each `validate_*` runs exactly the checks
/// the RPC handler runs before it reaches the store, in the handler's order, and returns the
/// status the handler would; nothing here reads or writes anything.
#[doc(hidden)]
pub mod fuzzing {
    use crate::cursor::HistoryCursor;
    use crate::requests;
    use roaming_proto::history::v1 as pb;
    use roaming_runtime::{ApiError, Caller, CursorSealer, convert};
    use roaming_store::Limits;
    use tonic::Status;

    /// AppendMessages up to the store: the caller's role, then the whole batch.
    pub fn validate_append(
        req: pb::AppendMessagesRequest,
        caller: &Caller,
        limits: &Limits,
    ) -> Result<(), Status> {
        caller.require_service("AppendMessages")?;
        requests::append_batch(req, limits).map_err(ApiError::from)?;
        Ok(())
    }

    /// FetchHistory up to the store: the acting user, then the request and its cursor.
    pub fn validate_fetch(
        req: pb::FetchHistoryRequest,
        caller: &Caller,
        limits: &Limits,
        sealer: &CursorSealer,
    ) -> Result<(), Status> {
        let user = caller.user()?;
        requests::fetch_plan(req, &user, limits, sealer)?;
        Ok(())
    }

    /// The cursor the server hands out after a page of `req` ending at seq `position` (the
    /// request must be valid): for building genuine, foreign and stale cursors in tests.
    pub fn fetch_cursor(
        req: pb::FetchHistoryRequest,
        caller: &Caller,
        limits: &Limits,
        sealer: &CursorSealer,
        position: i64,
    ) -> Result<String, Status> {
        let user = caller.user()?;
        let plan = requests::fetch_plan(req, &user, limits, sealer)?;
        Ok(HistoryCursor {
            direction: plan.direction,
            conversation: HistoryCursor::conversation_fingerprint(&plan.conversation.key()),
            filters: plan.filters,
            position,
        }
        .seal(sealer))
    }

    /// RemoveMessages up to the store: the acting user, the conversation, the ids.
    pub fn validate_remove(
        req: &pb::RemoveMessagesRequest,
        caller: &Caller,
        limits: &Limits,
    ) -> Result<(), Status> {
        let user = caller.user()?;
        convert::conversation("conversation", req.conversation.as_ref(), &user)
            .map_err(ApiError::from)?;
        requests::msg_ids(&req.msg_ids, limits).map_err(ApiError::from)?;
        Ok(())
    }

    /// RemoveMessagesBefore up to the store: the acting user, the conversation, the time.
    pub fn validate_remove_before(
        req: &pb::RemoveMessagesBeforeRequest,
        caller: &Caller,
    ) -> Result<(), Status> {
        let user = caller.user()?;
        convert::conversation("conversation", req.conversation.as_ref(), &user)
            .map_err(ApiError::from)?;
        if req.before_time_ms < 0 {
            return Err(ApiError::invalid("before_time_ms", "must not be negative").into());
        }
        Ok(())
    }

    /// Decodes a history cursor as FetchHistory does (MAC, then payload).
    pub fn open_cursor(sealer: &CursorSealer, text: &str) -> Result<(), Status> {
        HistoryCursor::open(sealer, text)?;
        Ok(())
    }
}
