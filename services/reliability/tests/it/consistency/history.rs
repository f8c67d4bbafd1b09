//! The recorded history: every call with its invocation, completion, outcome and what it saw.

use super::support::{key_of, ref_of};
use roaming_proto::common::v1::Message;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use tonic::Code;

/// A message as observed (acknowledged or read).
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub msg_id: i64,
    pub key: String,
    pub seq: i64,
    pub sender: String,
    pub client_msg_id: String,
    pub body: Vec<u8>,
    pub time: i64,
}

impl Msg {
    pub fn of(viewer: &str, m: &Message) -> (Self, Option<String>) {
        let c = m.conversation.clone().unwrap_or_default();
        let key = key_of(viewer, &c);
        // The label a reader gets must be its own view of the conversation.
        let label_ok = c == ref_of(viewer, &key);
        (
            Self {
                msg_id: m.msg_id.parse().unwrap_or(-1),
                key,
                seq: m.seq,
                sender: m.sender.clone(),
                client_msg_id: m.client_msg_id.clone(),
                body: m.body.clone(),
                time: m.server_time_ms,
            },
            (!label_ok).then(|| format!("{viewer} got {} labelled {c:?}", m.msg_id)),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    Fail,
    Unknown,
}

/// Where a read starts: an end, or right after a seq (a cursor's position).
#[derive(Debug, Clone, Copy)]
pub enum Start {
    End,
    After(i64),
}

#[derive(Debug, Clone)]
pub enum Detail {
    Append {
        /// (key, sender, client_msg_id) per message.
        batch: Vec<(String, String, String)>,
        results: Vec<(Msg, bool)>,
        retry_of: Option<usize>,
    },
    Read {
        key: String,
        forward: bool,
        start: Start,
        messages: Vec<Msg>,
        /// (messages, is_end) per page.
        pages: Vec<(usize, bool)>,
        /// The stream ended normally (not cut by an error).
        complete: bool,
        /// Part of a chain following cursors: the chain's id.
        chain: usize,
    },
    List {
        entries: Vec<(String, Msg, i64)>,
    },
    RemoveIds {
        key: String,
        ids: Vec<i64>,
        statuses: Vec<i32>,
    },
    RemoveBefore {
        key: String,
        time: i64,
    },
    RemoveConversation {
        key: String,
        delete: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Op {
    pub process: String,
    pub user: String,
    pub invoke: u64,
    pub complete: u64,
    pub outcome: Outcome,
    pub code: Option<Code>,
    pub detail: Detail,
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match &self.detail {
            Detail::Append { retry_of: None, .. } => "append",
            Detail::Append { .. } => "append (retry)",
            Detail::Read { forward: true, .. } => "fetch forward",
            Detail::Read { .. } => "fetch backward",
            Detail::List { .. } => "list",
            Detail::RemoveIds { .. } => "remove by id",
            Detail::RemoveBefore { .. } => "remove before time",
            Detail::RemoveConversation { delete: true, .. } => "remove conversation +messages",
            Detail::RemoveConversation { .. } => "remove conversation",
        }
    }
}

/// The recorded history.
pub struct History {
    pub started: Instant,
    pub ops: Mutex<Vec<Op>>,
    /// Acknowledged messages, for workers to pick ids and times from: key → msgs.
    pub known: Mutex<HashMap<String, Vec<Msg>>>,
    /// Messages labelled with another view of their conversation than their reader's.
    pub mislabelled: Mutex<Vec<String>>,
}

impl History {
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    pub fn push(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }
}

pub fn outcome_of(r: &Result<(), tonic::Status>) -> (Outcome, Option<Code>) {
    match r {
        Ok(()) => (Outcome::Ok, None),
        Err(s) => match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                (Outcome::Unknown, Some(s.code()))
            }
            c => (Outcome::Fail, Some(c)),
        },
    }
}
