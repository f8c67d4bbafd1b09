//! The gRPC handlers: each one is `parse` (pure) then `execute` (the store).

use crate::list::{List, ListSettings, ReadSettings};
use crate::members::{Change, Members};
use crate::organise::{self, MarkConversation, MarkRead};
use crate::remove::RemoveConversation;
use crate::sync::{Sync, SyncSettings};
use futures::Stream;
use roaming_domain::{Clock, Limits};
use roaming_proto::conversation::v1 as pb;
use roaming_proto::conversation::v1::conversation_service_server::ConversationService as ConversationApi;
use roaming_runtime::{Caller, CursorSealer};
use roaming_store::Store;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// The conversation service's server settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// List defaults.
    pub list: ListSettings,
    /// The change feed.
    pub sync: SyncSettings,
    /// Read state and organisation limits.
    pub read: ReadSettings,
}

/// `roaming.conversation.v1.ConversationService`.
#[derive(Debug, Clone)]
pub struct ConversationService {
    store: Store,
    limits: Limits,
    settings: ListSettings,
    sync: SyncSettings,
    read: ReadSettings,
    clock: Arc<dyn Clock>,
    sealer: CursorSealer,
    shutdown: CancellationToken,
}

impl ConversationService {
    /// A service over `store` with `settings` (a request's own values win where it has some).
    /// `shutdown` being cancelled ends open sync streams with UNAVAILABLE.
    pub fn new(
        store: Store,
        limits: Limits,
        settings: Settings,
        clock: Arc<dyn Clock>,
        sealer: CursorSealer,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            limits,
            settings: settings.list,
            sync: settings.sync,
            read: settings.read,
            clock,
            sealer,
            shutdown,
        }
    }

    /// AddMembers and RemoveMembers: the same command, two directions.
    async fn members<T>(
        &self,
        change: Change,
        conversation: Option<&roaming_proto::common::v1::ConversationRef>,
        user_ids: &[String],
        request: &Request<T>,
    ) -> Result<(), Status> {
        let caller = Caller::of(request)?;
        let command = Members::parse(change, conversation, user_ids, &caller, &self.limits)?;
        Ok(command.execute(&self.store).await?)
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::conversation_service_server::ConversationServiceServer<Self> {
        pb::conversation_service_server::ConversationServiceServer::new(self)
    }
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<pb::SyncConversationsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ConversationApi for ConversationService {
    type SyncConversationsStream = SyncStream;

    async fn sync_conversations(
        &self,
        request: Request<pb::SyncConversationsRequest>,
    ) -> Result<Response<Self::SyncConversationsStream>, Status> {
        let caller = Caller::of(&request)?;
        let now_ms = self.clock.now_ms();
        let command = Sync::parse(
            request.get_ref(),
            &caller,
            self.sync,
            self.read,
            &self.sealer,
            now_ms,
        )?;
        let pages = command.execute(
            self.store.clone(),
            self.sealer.clone(),
            now_ms,
            self.shutdown.clone(),
        );
        Ok(Response::new(Box::pin(pages)))
    }

    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let command = List::parse(
            request.get_ref(),
            &caller,
            self.settings,
            self.read,
            &self.limits,
            &self.sealer,
            self.clock.now_ms(),
        )?;
        Ok(Response::new(
            command.execute(&self.store, &self.sealer).await?,
        ))
    }

    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        let caller = Caller::of(&request)?;
        let command = MarkRead::parse(request.get_ref(), &caller)?;
        Ok(Response::new(
            command.execute(&self.store, self.read).await?,
        ))
    }

    async fn pin_conversation(
        &self,
        request: Request<pb::PinConversationRequest>,
    ) -> Result<Response<pb::PinConversationResponse>, Status> {
        let caller = Caller::of(&request)?;
        let command = organise::Pin::parse(request.get_ref(), &caller)?;
        let response = command
            .execute(&self.store, self.read, self.clock.now_ms())
            .await?;
        Ok(Response::new(response))
    }

    async fn mark_conversation(
        &self,
        request: Request<pb::MarkConversationRequest>,
    ) -> Result<Response<pb::MarkConversationResponse>, Status> {
        let caller = Caller::of(&request)?;
        let command = MarkConversation::parse(request.get_ref(), &caller)?;
        Ok(Response::new(
            command.execute(&self.store, self.read).await?,
        ))
    }

    async fn remove_conversation(
        &self,
        request: Request<pb::RemoveConversationRequest>,
    ) -> Result<Response<pb::RemoveConversationResponse>, Status> {
        let caller = Caller::of(&request)?;
        let command = RemoveConversation::parse(request.get_ref(), &caller)?;
        Ok(Response::new(command.execute(&self.store).await?))
    }

    async fn add_members(
        &self,
        request: Request<pb::AddMembersRequest>,
    ) -> Result<Response<pb::AddMembersResponse>, Status> {
        let req = request.get_ref();
        self.members(
            Change::Add,
            req.conversation.as_ref(),
            &req.user_ids,
            &request,
        )
        .await?;
        Ok(Response::new(pb::AddMembersResponse {}))
    }

    async fn remove_members(
        &self,
        request: Request<pb::RemoveMembersRequest>,
    ) -> Result<Response<pb::RemoveMembersResponse>, Status> {
        let req = request.get_ref();
        self.members(
            Change::Remove,
            req.conversation.as_ref(),
            &req.user_ids,
            &request,
        )
        .await?;
        Ok(Response::new(pb::RemoveMembersResponse {}))
    }
}
