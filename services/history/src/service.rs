//! The gRPC handlers: each one is `parse` (pure) then `execute` (the store).

use crate::append::Append;
use crate::change::{ChangeSettings, Edit, Recall};
use crate::digest::Digest;
use crate::fetch::Fetch;
use crate::remove::{RemoveBefore, RemoveIds};
use futures::Stream;
use roaming_domain::{Clock, Limits};
use roaming_proto::history::v1 as pb;
use roaming_proto::history::v1::history_service_server::HistoryService as HistoryApi;
use roaming_runtime::{Caller, CursorSealer};
use roaming_store::Store;
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// `roaming.history.v1.HistoryService`.
#[derive(Debug, Clone)]
pub struct HistoryService {
    store: Store,
    limits: Limits,
    changes: ChangeSettings,
    clock: Arc<dyn Clock>,
    sealer: CursorSealer,
    shutdown: CancellationToken,
}

impl HistoryService {
    /// A service over `store`. `shutdown` being cancelled ends open streams with UNAVAILABLE.
    pub fn new(
        store: Store,
        limits: Limits,
        changes: ChangeSettings,
        clock: Arc<dyn Clock>,
        sealer: CursorSealer,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            limits,
            changes,
            clock,
            sealer,
            shutdown,
        }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::history_service_server::HistoryServiceServer<Self> {
        pb::history_service_server::HistoryServiceServer::new(self)
    }
}

type PageStream = Pin<Box<dyn Stream<Item = Result<pb::FetchHistoryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl HistoryApi for HistoryService {
    async fn append_messages(
        &self,
        request: Request<pb::AppendMessagesRequest>,
    ) -> Result<Response<pb::AppendMessagesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let command = Append::parse(request.into_inner(), &caller, &self.limits)?;
        let response = command.execute(&self.store, self.clock.now_ms()).await?;
        Ok(Response::new(response))
    }

    type FetchHistoryStream = PageStream;

    async fn fetch_history(
        &self,
        request: Request<pb::FetchHistoryRequest>,
    ) -> Result<Response<Self::FetchHistoryStream>, Status> {
        let caller = Caller::of(&request)?;
        let command = Fetch::parse(request.into_inner(), &caller, &self.limits, &self.sealer)?;
        let pages = command
            .execute(
                self.store.clone(),
                self.sealer.clone(),
                self.shutdown.clone(),
            )
            .await?;
        Ok(Response::new(Box::pin(pages)))
    }

    async fn remove_messages(
        &self,
        request: Request<pb::RemoveMessagesRequest>,
    ) -> Result<Response<pb::RemoveMessagesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let command = RemoveIds::parse(request.into_inner(), &caller, &self.limits)?;
        Ok(Response::new(command.execute(&self.store).await?))
    }

    async fn remove_messages_before(
        &self,
        request: Request<pb::RemoveMessagesBeforeRequest>,
    ) -> Result<Response<pb::RemoveMessagesBeforeResponse>, Status> {
        let caller = Caller::of(&request)?;
        let command = RemoveBefore::parse(request.into_inner(), &caller)?;
        Ok(Response::new(command.execute(&self.store).await?))
    }

    async fn recall_message(
        &self,
        request: Request<pb::RecallMessageRequest>,
    ) -> Result<Response<pb::RecallMessageResponse>, Status> {
        let caller = Caller::of(&request)?;
        let command = Recall::parse(request.get_ref(), &caller)?;
        let response = command
            .execute(&self.store, self.changes, self.clock.now_ms())
            .await?;
        Ok(Response::new(response))
    }

    async fn edit_message(
        &self,
        request: Request<pb::EditMessageRequest>,
    ) -> Result<Response<pb::EditMessageResponse>, Status> {
        let caller = Caller::of(&request)?;
        let command = Edit::parse(request.into_inner(), &caller, &self.limits)?;
        let response = command
            .execute(&self.store, self.changes, self.clock.now_ms())
            .await?;
        Ok(Response::new(response))
    }

    async fn digest_history(
        &self,
        request: Request<pb::DigestHistoryRequest>,
    ) -> Result<Response<pb::DigestHistoryResponse>, Status> {
        let caller = Caller::of(&request)?;
        let command = Digest::parse(request.into_inner(), &caller)?;
        Ok(Response::new(command.execute(&self.store).await?))
    }
}
