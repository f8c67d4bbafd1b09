//! The model cross-user requests are checked against: who takes part where, and who removed what.

use rand::Rng;
use rand::rngs::StdRng;
use roaming_proto::common::v1::{ConversationRef, ConversationType, Message};
use roaming_testkit::{conv, peer};
use std::collections::{BTreeMap, HashMap, HashSet};

pub const USERS: [&str; 8] = ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"];

/// What each conversation holds, and who may see what (the model the responses are checked
/// against).
#[derive(Default)]
pub struct World {
    /// conv_key → its messages, by seq.
    pub messages: BTreeMap<String, Vec<Message>>,
    /// msg_id → conv_key.
    pub conv_of: HashMap<String, String>,
    /// group or chatroom key → members.
    pub members: HashMap<String, HashSet<String>>,
}

impl World {
    pub fn key_of(&self, user: &str, c: &ConversationRef) -> Option<String> {
        match ConversationType::try_from(c.r#type).ok()? {
            ConversationType::Peer => {
                let (a, b) = if user <= c.id.as_str() {
                    (user, c.id.as_str())
                } else {
                    (c.id.as_str(), user)
                };
                Some(format!("p:{a}:{b}"))
            }
            ConversationType::Group => Some(format!("g:{}", c.id)),
            ConversationType::Chatroom => Some(format!("r:{}", c.id)),
            ConversationType::Unspecified => None,
        }
    }

    /// Whether `user` takes part in `key`.
    pub fn takes_part(&self, user: &str, key: &str) -> bool {
        if let Some(rest) = key.strip_prefix("p:") {
            let (a, b) = rest.split_once(':').unwrap();
            return a == user || b == user;
        }
        self.members.get(key).is_some_and(|m| m.contains(user))
    }
}

/// One-way removals that completed, per user: hidden message ids.
#[derive(Default)]
pub struct Hidden {
    pub by_user: HashMap<String, HashSet<String>>,
}

#[derive(Default, Debug)]
pub struct Tally {
    pub requests: u64,
    pub by_kind: BTreeMap<&'static str, u64>,
    pub by_code: BTreeMap<String, u64>,
    pub messages_checked: u64,
    pub entries_checked: u64,
    pub violations: Vec<String>,
}

pub fn random_ref(rng: &mut StdRng) -> ConversationRef {
    let kind = match rng.random_range(0..10) {
        0..6 => ConversationType::Peer,
        6..8 => ConversationType::Group,
        _ => ConversationType::Chatroom,
    };
    let ids = [
        "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "team", "ops", "lobby", "nobody",
    ];
    let id = match kind {
        ConversationType::Peer => ids[rng.random_range(0..ids.len())],
        _ => ["team", "ops", "lobby", "u0", "nobody"][rng.random_range(0..5)],
    };
    conv(kind, id)
}

pub fn conversation_ref_of(user: &str, key: &str) -> ConversationRef {
    match key.split_once(':').unwrap() {
        ("p", rest) => {
            let (a, b) = rest.split_once(':').unwrap();
            peer(if a == user { b } else { a })
        }
        ("g", id) => conv(ConversationType::Group, id),
        (_, id) => conv(ConversationType::Chatroom, id),
    }
}
