//! The gRPC handlers: validate, call the store, convert back.

use crate::fetch::Pager;
use crate::requests::{self, Start};
use futures::Stream;
use roaming_proto::history::v1 as pb;
use roaming_proto::history::v1::history_service_server::HistoryService as HistoryApi;
use roaming_runtime::{ApiError, Caller, CursorSealer, convert};
use roaming_store::{Clock, Limits, RemovalStatus, Store};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// `roaming.history.v1.HistoryService`.
#[derive(Debug, Clone)]
pub struct HistoryService {
    store: Store,
    limits: Limits,
    clock: Arc<dyn Clock>,
    sealer: CursorSealer,
    shutdown: watch::Receiver<bool>,
}

impl HistoryService {
    /// A service over `store`. `shutdown` turning true ends open streams with UNAVAILABLE.
    pub fn new(
        store: Store,
        limits: Limits,
        clock: Arc<dyn Clock>,
        sealer: CursorSealer,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            limits,
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
        Caller::of(&request)?.require_service("AppendMessages")?;
        let batch =
            requests::append_batch(request.into_inner(), &self.limits).map_err(ApiError::from)?;
        let outcomes = self
            .store
            .append(&batch, self.clock.now_ms())
            .await
            .map_err(ApiError::from)?;
        let duplicates = outcomes.iter().filter(|o| o.duplicate).count() as u64;
        metrics::counter!(roaming_runtime::metrics::APPENDED)
            .increment(outcomes.len() as u64 - duplicates);
        metrics::counter!(roaming_runtime::metrics::DUPLICATES).increment(duplicates);
        let results = outcomes
            .into_iter()
            .zip(&batch)
            .map(|(o, m)| pb::AppendResult {
                message: Some(convert::message(o.message, &m.sender)),
                duplicate: o.duplicate,
            })
            .collect();
        Ok(Response::new(pb::AppendMessagesResponse { results }))
    }

    type FetchHistoryStream = PageStream;

    async fn fetch_history(
        &self,
        request: Request<pb::FetchHistoryRequest>,
    ) -> Result<Response<Self::FetchHistoryStream>, Status> {
        let user = Caller::of(&request)?.user()?;
        let plan = requests::fetch_plan(request.into_inner(), &user, &self.limits, &self.sealer)?;
        let position = match plan.start {
            Start::End => plan.direction.start(),
            Start::Position(p) => p,
            Start::Anchor(id) => self
                .store
                .anchor_seq(&user, &plan.conversation, id, "start_msg_id")
                .await
                .map_err(ApiError::from)?,
        };
        let mut pager = Pager::new(
            self.store.clone(),
            self.sealer.clone(),
            user,
            plan,
            position,
            self.shutdown.clone(),
        );
        // The first page is read before answering, so access and anchor errors are the
        // call's status rather than a failed first message.
        let (first, done) = pager.next_page().await?;
        Ok(Response::new(Box::pin(pager.into_stream(first, done))))
    }

    async fn remove_messages(
        &self,
        request: Request<pb::RemoveMessagesRequest>,
    ) -> Result<Response<pb::RemoveMessagesResponse>, Status> {
        let user = Caller::of(&request)?.user()?;
        let req = request.into_inner();
        let conversation = convert::conversation("conversation", req.conversation.as_ref(), &user)
            .map_err(ApiError::from)?;
        let ids = requests::msg_ids(&req.msg_ids, &self.limits).map_err(ApiError::from)?;
        let statuses = self
            .store
            .remove_messages(&user, &conversation, &ids)
            .await
            .map_err(ApiError::from)?;
        let results = req
            .msg_ids
            .into_iter()
            .zip(&ids)
            .map(|(text, id)| pb::RemovalResult {
                msg_id: text,
                status: match statuses.get(id) {
                    Some(RemovalStatus::Removed) => pb::RemovalStatus::Removed,
                    Some(RemovalStatus::AlreadyRemoved) => pb::RemovalStatus::AlreadyRemoved,
                    Some(RemovalStatus::NotFound) | None => pb::RemovalStatus::NotFound,
                } as i32,
            })
            .collect();
        Ok(Response::new(pb::RemoveMessagesResponse { results }))
    }

    async fn remove_messages_before(
        &self,
        request: Request<pb::RemoveMessagesBeforeRequest>,
    ) -> Result<Response<pb::RemoveMessagesBeforeResponse>, Status> {
        let user = Caller::of(&request)?.user()?;
        let req = request.into_inner();
        let conversation = convert::conversation("conversation", req.conversation.as_ref(), &user)
            .map_err(ApiError::from)?;
        if req.before_time_ms < 0 {
            return Err(ApiError::invalid("before_time_ms", "must not be negative").into());
        }
        self.store
            .remove_messages_before(&user, &conversation, req.before_time_ms)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::RemoveMessagesBeforeResponse {}))
    }
}
