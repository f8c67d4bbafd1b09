//! DigestHistory: per bucket of consecutive seqs, the count and a digest of the messages the
//! caller may see, so a device proves its copy complete or learns which buckets to refetch.

use roaming_domain::{Conversation, UserId};
use roaming_proto::history::v1 as pb;
use roaming_runtime::{ApiError, Caller, convert, trace};
use roaming_store::{DigestQuery, Store};

/// Seqs per bucket when the request says 0.
pub const DEFAULT_BUCKET_SIZE: i64 = 1000;
/// Largest bucket.
pub const MAX_BUCKET_SIZE: i64 = 100_000;
/// Most buckets per call.
pub const MAX_BUCKETS: i64 = 1000;

/// A validated DigestHistory call.
#[derive(Debug, Clone)]
pub struct Digest {
    user: UserId,
    conversation: Conversation,
    query: DigestQuery,
}

impl Digest {
    /// Checks the acting user, the conversation and the range.
    pub fn parse(req: pb::DigestHistoryRequest, caller: &Caller) -> Result<Self, ApiError> {
        let user = caller.user()?;
        let conversation = convert::conversation("conversation", req.conversation.as_ref(), &user)?;
        for (name, value) in [
            ("from_seq", req.from_seq),
            ("to_seq", req.to_seq),
            ("bucket_size", req.bucket_size),
        ] {
            if value < 0 {
                return Err(ApiError::invalid(name, "must not be negative"));
            }
        }
        let from_seq = req.from_seq.max(1);
        let bucket_size = match req.bucket_size {
            0 => DEFAULT_BUCKET_SIZE,
            n if n > MAX_BUCKET_SIZE => {
                return Err(ApiError::invalid(
                    "bucket_size",
                    format!("must be at most {MAX_BUCKET_SIZE}"),
                ));
            }
            n => n,
        };
        let to_seq = match req.to_seq {
            0 => None,
            to if to < from_seq => {
                return Err(ApiError::invalid("from_seq", "must not be after to_seq"));
            }
            to => {
                let buckets = (to - from_seq) / bucket_size + 1;
                if buckets > MAX_BUCKETS {
                    return Err(ApiError::invalid(
                        "to_seq",
                        format!(
                            "the range needs {buckets} buckets; at most {MAX_BUCKETS} per call"
                        ),
                    ));
                }
                Some(to)
            }
        };
        Ok(Self {
            user,
            conversation,
            query: DigestQuery {
                from_seq,
                to_seq,
                bucket_size,
                max_buckets: MAX_BUCKETS,
            },
        })
    }

    pub(crate) async fn execute(
        self,
        store: &Store,
    ) -> Result<pb::DigestHistoryResponse, ApiError> {
        trace::record_conversation(&self.conversation);
        let buckets = store
            .digest(&self.user, &self.conversation, self.query)
            .await?
            .into_iter()
            .map(|b| pb::HistoryBucket {
                from_seq: b.from_seq,
                to_seq: b.to_seq,
                count: b.count,
                digest: b.digest.iter().map(|x| format!("{x:02x}")).collect(),
            })
            .collect();
        Ok(pb::DigestHistoryResponse { buckets })
    }
}
