//! The gRPC handlers: validate, call the store, convert back.

use crate::cursor::ListCursor;
use crate::requests::{self, ListDefaults};
use roaming_proto::common::v1 as common;
use roaming_proto::conversation::v1 as pb;
use roaming_proto::conversation::v1::conversation_service_server::ConversationService as ConversationApi;
use roaming_runtime::{ApiError, Caller, CursorSealer, convert};
use roaming_store::{Clock, Conversation, ConversationKind, Limits, RemovalScope, Store, UserId};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub use crate::requests::ListDefaults as ListSettings;

/// `roaming.conversation.v1.ConversationService`.
#[derive(Debug, Clone)]
pub struct ConversationService {
    store: Store,
    limits: Limits,
    defaults: ListDefaults,
    clock: Arc<dyn Clock>,
    sealer: CursorSealer,
}

impl ConversationService {
    /// A service over `store`, listing with `defaults` unless a request says otherwise.
    pub fn new(
        store: Store,
        limits: Limits,
        defaults: ListSettings,
        clock: Arc<dyn Clock>,
        sealer: CursorSealer,
    ) -> Self {
        Self {
            store,
            limits,
            defaults,
            clock,
            sealer,
        }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::conversation_service_server::ConversationServiceServer<Self> {
        pb::conversation_service_server::ConversationServiceServer::new(self)
    }
}

/// Any viewer: a group's id is the same for everyone.
fn placeholder_viewer() -> UserId {
    UserId::parse("viewer", "roaming").expect("a valid id")
}

/// What a RemoveConversation request removes, for whom and how far: everything the handler
/// checks before it reaches the store (also run by `crate::fuzzing`).
pub(crate) fn removal_target(
    caller: &Caller,
    req: &pb::RemoveConversationRequest,
) -> Result<(UserId, Conversation, RemovalScope), ApiError> {
    let scope = requests::scope(req.scope)?;
    if scope == RemovalScope::ForEveryone {
        caller.require_service("RemoveConversation with REMOVAL_SCOPE_FOR_EVERYONE")?;
    }
    // A service purging a GROUP or CHATROOM for everyone names no user: the group id
    // does not depend on who looks at it. Every other removal acts for a user.
    let purges_group = scope == RemovalScope::ForEveryone
        && caller.act_as.is_none()
        && req.conversation.as_ref().is_some_and(|c| {
            c.r#type == ConversationKind::Group as i32
                || c.r#type == ConversationKind::Chatroom as i32
        });
    if purges_group {
        // The store ignores the user for FOR_EVERYONE.
        return Ok((
            placeholder_viewer(),
            group(req.conversation.as_ref())?,
            scope,
        ));
    }
    let user = caller.user()?;
    let conversation = convert::conversation("conversation", req.conversation.as_ref(), &user)
        .map_err(ApiError::from)?;
    Ok((user, conversation, scope))
}

/// A GROUP or CHATROOM named by a membership request (PEER has no membership to manage).
pub(crate) fn group(value: Option<&common::ConversationRef>) -> Result<Conversation, ApiError> {
    let value = value.ok_or_else(|| ApiError::invalid("conversation", "is required"))?;
    let kind = ConversationKind::from_i32("conversation.type", value.r#type)?;
    if kind == ConversationKind::Peer {
        return Err(ApiError::invalid(
            "conversation.type",
            "must be CONVERSATION_TYPE_GROUP or CONVERSATION_TYPE_CHATROOM",
        ));
    }
    let id = UserId::parse("conversation.id", &value.id)?;
    Ok(Conversation::from_view(kind, id.clone(), &id))
}

#[tonic::async_trait]
impl ConversationApi for ConversationService {
    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        let user = Caller::of(&request)?.user()?;
        let req = request.into_inner();
        let (query, kinds_fp) = requests::list_query(
            &req,
            self.defaults,
            &self.limits,
            &self.sealer,
            self.clock.now_ms(),
        )?;
        let (entries, more) = self
            .store
            .list_conversations(&user, &query)
            .await
            .map_err(ApiError::from)?;
        let next_cursor = match entries.last() {
            Some(last) if more => ListCursor {
                kinds: kinds_fp,
                active_since_ms: query.active_since_ms,
                last_activity_ms: last.last_activity_ms,
                key: last.key.clone(),
            }
            .seal(&self.sealer),
            _ => String::new(),
        };
        let conversations = entries
            .into_iter()
            .map(|e| pb::Conversation {
                conversation: Some(convert::conversation_ref(&e.conversation, &user)),
                last_message: Some(convert::message(e.last_message, &user)),
                last_activity_ms: e.last_activity_ms,
            })
            .collect();
        Ok(Response::new(pb::ListConversationsResponse {
            conversations,
            next_cursor,
        }))
    }

    async fn remove_conversation(
        &self,
        request: Request<pb::RemoveConversationRequest>,
    ) -> Result<Response<pb::RemoveConversationResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        let (user, conversation, scope) = removal_target(&caller, &req)?;
        self.store
            .remove_conversation(&user, &conversation, req.delete_messages, scope)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::RemoveConversationResponse {}))
    }

    async fn add_members(
        &self,
        request: Request<pb::AddMembersRequest>,
    ) -> Result<Response<pb::AddMembersResponse>, Status> {
        Caller::of(&request)?.require_service("AddMembers")?;
        let req = request.into_inner();
        let conversation = group(req.conversation.as_ref())?;
        let users = convert::user_ids("user_ids", &req.user_ids, self.limits.max_members_per_call)
            .map_err(ApiError::from)?;
        self.store
            .add_members(&conversation, &users)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::AddMembersResponse {}))
    }

    async fn remove_members(
        &self,
        request: Request<pb::RemoveMembersRequest>,
    ) -> Result<Response<pb::RemoveMembersResponse>, Status> {
        Caller::of(&request)?.require_service("RemoveMembers")?;
        let req = request.into_inner();
        let conversation = group(req.conversation.as_ref())?;
        let users = convert::user_ids("user_ids", &req.user_ids, self.limits.max_members_per_call)
            .map_err(ApiError::from)?;
        self.store
            .remove_members(&conversation, &users)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::RemoveMembersResponse {}))
    }
}
