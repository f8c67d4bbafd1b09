//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz), shared with the corpus replay in
//! `tests/it/input.rs` so that the committed corpus runs in every `cargo test`.
//!
//! Each target takes arbitrary bytes, runs them through the services' own cursor decoding or
//! the handlers' own `parse` (`roaming_history::Fetch::parse`, `Append::parse`,
//! `roaming_conversation::List::parse`, the `cursor::open` functions), and
//! panics only when an invariant breaks: a refusal must be `INVALID_ARGUMENT` naming one of
//! the request's fields, never another code, and nothing may panic on the way.

use prost::Message as _;
use roaming_domain::{Limits, UserId};
use roaming_proto::conversation::v1 as cpb;
use roaming_proto::history::v1 as hpb;
use roaming_runtime::{Caller, CursorSealer};
use tonic::{Code, Status};

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and corpus folder.
pub const TARGETS: [(&str, Target); 5] = [
    ("history_cursor", history_cursor),
    ("list_cursor", list_cursor),
    ("fetch_request", fetch_request),
    ("append_request", append_request),
    ("list_request", list_request),
];

/// The cursor key the targets use.
pub fn sealer() -> CursorSealer {
    CursorSealer::derive(b"roaming fuzz cursor key")
}

fn user() -> Caller {
    Caller {
        subject: "alice".into(),
        is_service: false,
        act_as: Some(UserId::parse("sub", "alice").expect("valid id")),
    }
}

fn service() -> Caller {
    Caller {
        subject: "gateway".into(),
        is_service: true,
        act_as: None,
    }
}

/// `result` is OK, or INVALID_ARGUMENT whose message starts with one of `fields`.
#[track_caller]
pub fn assert_ok_or_names(result: Result<(), Status>, fields: &[&str], what: &str) {
    if let Err(status) = result {
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{what}: refused with {status:?}"
        );
        assert!(
            fields.iter().any(|f| status.message().starts_with(f)),
            "{what}: {:?} names none of {fields:?}",
            status.message()
        );
    }
}

/// A history cursor from arbitrary text, and from an arbitrary payload under a valid MAC.
pub fn history_cursor(data: &[u8]) {
    let sealer = sealer();
    let text = String::from_utf8_lossy(data);
    let r = roaming_history::cursor::open(&sealer, &text).map_err(Status::from);
    assert!(
        r.is_err() || text.is_empty() || sealer.open(&text).is_some(),
        "an unsealed history cursor opened"
    );
    assert_ok_or_names(r, &["cursor"], "history cursor text");
    let sealed = sealer.seal(data);
    assert_ok_or_names(
        roaming_history::cursor::open(&sealer, &sealed).map_err(Status::from),
        &["cursor"],
        "history cursor payload",
    );
}

/// A list cursor from arbitrary text, and from an arbitrary payload under a valid MAC.
pub fn list_cursor(data: &[u8]) {
    let sealer = sealer();
    let text = String::from_utf8_lossy(data);
    let r = roaming_conversation::cursor::open(&sealer, &text).map_err(Status::from);
    assert!(
        r.is_err() || sealer.open(&text).is_some(),
        "an unsealed list cursor opened"
    );
    assert_ok_or_names(r, &["cursor"], "list cursor text");
    let sealed = sealer.seal(data);
    assert_ok_or_names(
        roaming_conversation::cursor::open(&sealer, &sealed).map_err(Status::from),
        &["cursor"],
        "list cursor payload",
    );
}

/// FetchHistory from arbitrary protobuf bytes (what the transport would hand the handler).
pub fn fetch_request(data: &[u8]) {
    let Ok(req) = hpb::FetchHistoryRequest::decode(data) else {
        return;
    };
    let fields = [
        "conversation",
        "direction",
        "page_size",
        "max_pages",
        "start_time_ms",
        "end_time_ms",
        "senders",
        "types",
        "start_msg_id",
        "cursor",
    ];
    let r = roaming_history::Fetch::parse(req, &user(), &Limits::DEFAULT, &sealer())
        .map(|_| ())
        .map_err(Status::from);
    assert_ok_or_names(r, &fields, "FetchHistoryRequest");
}

/// AppendMessages from arbitrary protobuf bytes.
pub fn append_request(data: &[u8]) {
    let Ok(req) = hpb::AppendMessagesRequest::decode(data) else {
        return;
    };
    let r = roaming_history::Append::parse(req, &service(), &Limits::DEFAULT)
        .map(|_| ())
        .map_err(Status::from);
    assert_ok_or_names(r, &["messages"], "AppendMessagesRequest");
}

/// ListConversations from arbitrary protobuf bytes.
pub fn list_request(data: &[u8]) {
    let Ok(req) = cpb::ListConversationsRequest::decode(data) else {
        return;
    };
    let r = roaming_conversation::List::parse(
        &req,
        &user(),
        roaming_conversation::ListSettings::DEFAULT,
        roaming_conversation::ReadSettings::DEFAULT,
        &Limits::DEFAULT,
        &sealer(),
        1_800_000_000_000,
    )
    .map(|_| ())
    .map_err(Status::from);
    assert_ok_or_names(
        r,
        &["page_size", "active_since_ms", "types", "mark", "cursor"],
        "ListConversationsRequest",
    );
}
