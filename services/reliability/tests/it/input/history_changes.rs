//! Generated RecallMessage and EditMessage requests (a service acting for the sender) and
//! DigestHistory requests (user-scoped), and their validation.

use super::append::{attributes_field, body_field};
use super::fields::{conversation_field, msg_id_field};
use super::support::{Case, Expect, Who, parsed, sender_who, user_scoped, user_scoped_who};
use proptest::prelude::*;
use roaming_domain::Limits;
use roaming_proto::history::v1 as hpb;
use tonic::Status;

/// Recall and edit: a user token is PERMISSION_DENIED whatever the request, a service naming
/// nobody is refused on `x-roaming-user`; otherwise the request's own faults.
fn for_the_sender(who: Who, faults: Vec<String>) -> Expect {
    if who == Who::User {
        Expect::Denied
    } else {
        user_scoped(who, faults)
    }
}

pub fn recall_case() -> BoxedStrategy<Case<hpb::RecallMessageRequest>> {
    (
        conversation_field(),
        msg_id_field("msg_id".to_owned()),
        sender_who(),
    )
        .prop_map(|(c, id, who)| {
            let mut faults = c.1;
            faults.extend(id.1);
            Case {
                req: hpb::RecallMessageRequest {
                    conversation: c.0,
                    msg_id: id.0,
                },
                who,
                expect: for_the_sender(who, faults),
            }
        })
        .boxed()
}

pub fn validate_recall(case: &Case<hpb::RecallMessageRequest>) -> Result<(), Status> {
    parsed(roaming_history::Recall::parse(
        &case.req,
        &case.who.caller(),
    ))
}

pub fn edit_case() -> BoxedStrategy<Case<hpb::EditMessageRequest>> {
    (
        conversation_field(),
        msg_id_field("msg_id".to_owned()),
        body_field(),
        attributes_field(),
        sender_who(),
    )
        .prop_map(|(c, id, body, attributes, who)| {
            let mut faults = c.1;
            faults.extend(id.1);
            faults.extend(body.1.iter().chain(&attributes.1).map(|f| f.to_string()));
            Case {
                req: hpb::EditMessageRequest {
                    conversation: c.0,
                    msg_id: id.0,
                    body: body.0,
                    attributes: attributes.0.into_iter().collect(),
                },
                who,
                expect: for_the_sender(who, faults),
            }
        })
        .boxed()
}

pub fn validate_edit(case: &Case<hpb::EditMessageRequest>) -> Result<(), Status> {
    parsed(roaming_history::Edit::parse(
        case.req.clone(),
        &case.who.caller(),
        &Limits::DEFAULT,
    ))
}

/// The contract's DigestHistory bounds.
const DEFAULT_BUCKET: i64 = 1000;
const MAX_BUCKET: i64 = 100_000;
const MAX_BUCKETS: i128 = 1000;

/// How a generated `to_seq` relates to the request's `from_seq` and `bucket_size`.
#[derive(Debug, Clone)]
enum To {
    /// 0: up to the newest stored seq.
    Open,
    /// `from_seq` (0 read as 1) plus this.
    Span(i64),
    /// The end of the n-th bucket from `from_seq`, less this offset inside the bucket.
    Buckets(i64, u64),
    /// Before `from_seq` by this much.
    Before(i64),
    Exactly(i64),
}

/// The faults of a DigestHistory range, from the contract: negative values; a bucket over
/// 100,000; `from_seq` (0 read as 1) after a non-zero `to_seq`; more than 1000 buckets.
fn range_faults(from: i64, to: i64, bucket: i64) -> Vec<String> {
    let mut faults = Vec::new();
    for (name, value) in [("from_seq", from), ("to_seq", to), ("bucket_size", bucket)] {
        if value < 0 {
            faults.push(name.to_owned());
        }
    }
    if bucket > MAX_BUCKET {
        faults.push("bucket_size".to_owned());
    }
    if from >= 0 && to > 0 {
        let first = from.max(1);
        if first > to {
            // The contract names no field for an inverted range: either end will do.
            faults.extend(["from_seq".to_owned(), "to_seq".to_owned()]);
        } else if (0..=MAX_BUCKET).contains(&bucket) {
            let size = if bucket == 0 { DEFAULT_BUCKET } else { bucket } as i128;
            let seqs = to as i128 - first as i128 + 1;
            if (seqs + size - 1) / size > MAX_BUCKETS {
                faults.push("to_seq".to_owned());
            }
        }
    }
    faults
}

pub fn digest_case() -> BoxedStrategy<Case<hpb::DigestHistoryRequest>> {
    let from = prop_oneof![
        3 => Just(0i64),
        4 => 1..=1_000_000i64,
        1 => (1i64 << 40)..=i64::MAX,
        1 => i64::MIN..0,
    ];
    let bucket = prop_oneof![
        2 => Just(0i64),
        4 => 1..=100i64,
        2 => 1..=MAX_BUCKET,
        1 => Just(MAX_BUCKET),
        1 => (MAX_BUCKET + 1)..=i64::MAX,
        1 => i64::MIN..0,
    ];
    let to = prop_oneof![
        3 => Just(To::Open),
        3 => (0..=10_000i64).prop_map(To::Span),
        4 => (995..=1005i64, any::<u64>()).prop_map(|(n, r)| To::Buckets(n, r)),
        1 => (1..=1000i64).prop_map(To::Before),
        1 => (i64::MIN..0).prop_map(To::Exactly),
        1 => Just(To::Exactly(i64::MAX)),
    ];
    (conversation_field(), from, bucket, to, user_scoped_who())
        .prop_map(|(c, from, bucket, to, who)| {
            let first = from.max(1);
            let size = if (1..=MAX_BUCKET).contains(&bucket) {
                bucket
            } else {
                DEFAULT_BUCKET
            };
            let to = match to {
                To::Open => 0,
                To::Span(d) => first.saturating_add(d),
                To::Buckets(n, r) => first
                    .saturating_add(n.saturating_mul(size))
                    .saturating_sub(1 + (r % size as u64) as i64),
                To::Before(d) => (first - d).max(1),
                To::Exactly(t) => t,
            };
            let mut faults = c.1;
            faults.extend(range_faults(from, to, bucket));
            Case {
                req: hpb::DigestHistoryRequest {
                    conversation: c.0,
                    from_seq: from,
                    to_seq: to,
                    bucket_size: bucket,
                },
                who,
                expect: user_scoped(who, faults),
            }
        })
        .boxed()
}

pub fn validate_digest(case: &Case<hpb::DigestHistoryRequest>) -> Result<(), Status> {
    parsed(roaming_history::Digest::parse(
        case.req.clone(),
        &case.who.caller(),
    ))
}
