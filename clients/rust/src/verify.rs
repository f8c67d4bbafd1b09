//! `Client::verify`: the local copy of one conversation compared with the server's bucket by
//! bucket (`DigestHistory`), and exactly the buckets that differ fetched again.

use crate::connect::Client;
use crate::error::Error;
use crate::history::MAX_PAGE_SIZE;
use crate::types::{ConversationRef, DigestBucket, Direction, Message};
use futures::StreamExt;
use futures::future::BoxFuture;
use roaming_proto::history::v1 as hpb;
use std::future::IntoFuture;
use std::ops::RangeInclusive;

/// Seqs per bucket unless [`VerifyRequest::bucket_size`] says otherwise.
pub const DEFAULT_VERIFY_BUCKET: i64 = 100;
/// Most buckets the server describes per `DigestHistory` call.
const MAX_BUCKETS_PER_CALL: i64 = 1000;
/// Largest bucket the server accepts.
const MAX_BUCKET_SIZE: i64 = 100_000;

/// A verify being set up: chain options, then `.await` it. Made by [`Client::verify`].
#[derive(Debug, Clone)]
#[must_use = "a verify does nothing until awaited"]
pub struct VerifyRequest {
    client: Client,
    conversation: ConversationRef,
    bucket_size: i64,
}

/// What one [`Client::verify`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The seq range compared: what the store holds of the conversation (`None`: nothing,
    /// so nothing was compared).
    pub range: Option<RangeInclusive<i64>>,
    /// Buckets compared.
    pub buckets_checked: usize,
    /// The buckets whose count or digest differed from the server's, in seq order.
    pub differing: Vec<RangeInclusive<i64>>,
    /// Buckets fetched again and replaced (all of the differing ones, when it succeeds).
    pub buckets_refetched: usize,
    /// Messages the refetched buckets hold now.
    pub messages_refetched: usize,
}

impl VerifyRequest {
    /// Seqs per bucket: 1-100,000 (default [`DEFAULT_VERIFY_BUCKET`]). Smaller buckets
    /// refetch less when one message differs, and cost more buckets to compare.
    pub fn bucket_size(mut self, size: i64) -> Self {
        self.bucket_size = size;
        self
    }

    /// Runs the verify (the same as `.await`ing the request).
    pub async fn run(self) -> Result<VerifyReport, Error> {
        if !(1..=MAX_BUCKET_SIZE).contains(&self.bucket_size) {
            return Err(Error::InvalidArgument(format!(
                "bucket_size must be 1-{MAX_BUCKET_SIZE}"
            )));
        }
        let client = &self.client;
        let store = client.local.clone().ok_or(Error::NoLocalStore)?;
        let _exclusive = store.exclusive.clone().lock_owned().await;
        let conversation = self.conversation.clone();
        let c = conversation.clone();
        let Some((lo, hi)) = store.call(move |s| s.held_range(&c)).await? else {
            return Ok(VerifyReport::default());
        };
        let mut report = VerifyReport {
            range: Some(lo..=hi),
            ..VerifyReport::default()
        };
        // Compare, one DigestHistory call per 1,000 buckets.
        let mut from = lo;
        while from <= hi {
            let to = from
                .saturating_add(self.bucket_size * MAX_BUCKETS_PER_CALL - 1)
                .min(hi);
            let server = self.server_buckets(from, to).await?;
            let c = conversation.clone();
            let size = self.bucket_size;
            let local = store.call(move |s| s.digest(&c, from, to, size)).await?;
            if server.len() != local.len() {
                return Err(Error::InvalidResponse(format!(
                    "DigestHistory gave {} buckets for seqs {from}-{to}, expected {}",
                    server.len(),
                    local.len()
                )));
            }
            for (theirs, ours) in server.iter().zip(&local) {
                if (theirs.from_seq, theirs.to_seq) != (ours.from_seq, ours.to_seq) {
                    return Err(Error::InvalidResponse(format!(
                        "DigestHistory bucket {}-{} where {}-{} was expected",
                        theirs.from_seq, theirs.to_seq, ours.from_seq, ours.to_seq
                    )));
                }
                report.buckets_checked += 1;
                if theirs != ours {
                    report.differing.push(ours.from_seq..=ours.to_seq);
                }
            }
            from = to + 1;
        }
        // Refetch the differing buckets from the top down, each read backward from the
        // oldest stored message above it: every stored message above a bucket is in a bucket
        // that matched or was just refetched, so the anchor is the server's own.
        for bucket in report.differing.clone().into_iter().rev() {
            let (a, b) = (*bucket.start(), *bucket.end());
            let c = conversation.clone();
            let (_, above) = store
                .call(move |s| s.neighbours(&c, i64::MIN, b + 1))
                .await?;
            let messages = refetch(client, &conversation, a, b, above.as_ref()).await?;
            report.buckets_refetched += 1;
            report.messages_refetched += messages.len();
            let c = conversation.clone();
            store
                .call(move |s| s.replace_range(&c, a, b, &messages))
                .await?;
        }
        // Every bucket of the range now matches the server's: the range is complete.
        let c = conversation.clone();
        store.call(move |s| s.cover(&c, lo, hi)).await?;
        Ok(report)
    }

    async fn server_buckets(&self, from: i64, to: i64) -> Result<Vec<DigestBucket>, Error> {
        let request = hpb::DigestHistoryRequest {
            conversation: Some(self.conversation.to_proto()),
            from_seq: from,
            to_seq: to,
            bucket_size: self.bucket_size,
        };
        let response = self
            .client
            .retry
            .run(|| {
                let mut raw = self.client.history();
                let request = request.clone();
                async move { Ok(raw.digest_history(request).await?.into_inner()) }
            })
            .await?;
        Ok(response
            .buckets
            .into_iter()
            .map(DigestBucket::from)
            .collect())
    }
}

impl IntoFuture for VerifyRequest {
    type Output = Result<VerifyReport, Error>;
    type IntoFuture = BoxFuture<'static, Result<VerifyReport, Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// The server's messages of seqs `a..=b`, oldest first: read backward from `anchor` (from
/// the newest message without one, or when the server no longer knows it) until below `a`.
async fn refetch(
    client: &Client,
    conversation: &ConversationRef,
    a: i64,
    b: i64,
    anchor: Option<&Message>,
) -> Result<Vec<Message>, Error> {
    let mut anchors = vec![anchor];
    if anchor.is_some() {
        anchors.push(None);
    }
    let mut last_error = None;
    for anchor in anchors {
        let mut request = client
            .fetch_history(conversation.clone())
            .direction(Direction::Backward)
            .page_size(MAX_PAGE_SIZE)
            .save_locally(false);
        if let Some(m) = anchor {
            request = request.start_msg_id(m.msg_id.clone());
        }
        let mut pages = request.pages();
        let mut found = Vec::new();
        let mut failed = None;
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => {
                    let below = page.messages.last().is_some_and(|m| m.seq < a);
                    found.extend(
                        page.messages
                            .into_iter()
                            .filter(|m| (a..=b).contains(&m.seq)),
                    );
                    if below || page.is_end {
                        break;
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => {
                found.reverse();
                return Ok(found);
            }
            Some(Error::NotFound(e)) => last_error = Some(Error::NotFound(e)),
            Some(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| Error::InvalidResponse("no backward read".into())))
}

impl Client {
    /// Checks the local copy of `conversation` against the server's and repairs it:
    /// `DigestHistory` describes, per bucket of seqs over the range the store holds, how
    /// many messages the user may see and a digest of their `(seq, msg_id, edit_version)`;
    /// [`LocalStore::digest`](crate::LocalStore::digest) computes the same over the local
    /// messages. Exactly the buckets that differ are fetched again, and their local messages
    /// replaced with the server's ([`StoreEvent::MessagesReplaced`](crate::StoreEvent)
    /// each). Afterwards the whole range counts as complete locally.
    ///
    /// Bodies and attributes are not part of the digest: a verify finds missing, extra,
    /// misplaced and outdated (edited) messages, not altered bytes.
    ///
    /// ```no_run
    /// # async fn demo(client: roaming_client::Client) -> Result<(), roaming_client::Error> {
    /// use roaming_client::ConversationRef;
    /// let report = client.verify(&ConversationRef::peer("bob")).await?;
    /// println!("{} buckets checked, {} refetched", report.buckets_checked, report.buckets_refetched);
    /// # Ok(()) }
    /// ```
    pub fn verify(&self, conversation: &ConversationRef) -> VerifyRequest {
        VerifyRequest {
            client: self.clone(),
            conversation: conversation.clone(),
            bucket_size: DEFAULT_VERIFY_BUCKET,
        }
    }
}
