//! What the consistency test shares: the users and conversations, their keys, the call timeout.

use roaming_proto::common::v1::{ConversationRef, ConversationType};
use roaming_testkit::{conv, peer};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];
pub const PEERS: [(&str, &str); 5] = [
    ("u0", "u1"),
    ("u0", "u2"),
    ("u1", "u2"),
    ("u3", "u4"),
    ("u3", "u5"),
];
pub const GROUP: &str = "grp";
pub const MEMBERS: [&str; 5] = ["u0", "u1", "u2", "u3", "u4"];
pub const DEVICES: usize = 2;
pub const WRITERS: usize = 3;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Set when the load phase ends.
pub type Stop = Arc<AtomicBool>;

pub fn peer_key(a: &str, b: &str) -> String {
    if a <= b {
        format!("p:{a}:{b}")
    } else {
        format!("p:{b}:{a}")
    }
}

/// The storage key of `c` as `viewer` names it.
pub fn key_of(viewer: &str, c: &ConversationRef) -> String {
    if c.r#type == ConversationType::Peer as i32 {
        peer_key(viewer, &c.id)
    } else {
        format!("g:{}", c.id)
    }
}

/// `viewer`'s name for the conversation `key`.
pub fn ref_of(viewer: &str, key: &str) -> ConversationRef {
    match key.strip_prefix("p:") {
        Some(rest) => {
            let (a, b) = rest.split_once(':').unwrap();
            peer(if a == viewer { b } else { a })
        }
        None => conv(ConversationType::Group, &key[2..]),
    }
}

/// The conversations `user` takes part in (and, for the outsider, the group it is not in).
pub fn conversations_of(user: &str) -> Vec<String> {
    let mut out: Vec<String> = PEERS
        .iter()
        .filter(|(a, b)| *a == user || *b == user)
        .map(|(a, b)| peer_key(a, b))
        .collect();
    out.push(format!("g:{GROUP}"));
    out
}

pub fn is_member(user: &str) -> bool {
    MEMBERS.contains(&user)
}

pub async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::deadline_exceeded("client-side timeout")),
    }
}
