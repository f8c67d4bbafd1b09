//! The gateway writers: batches of peer and group messages, and retries of earlier batches.

use super::history::{Detail, History, Msg, Op, Outcome, outcome_of};
use super::support::{GROUP, MEMBERS, PEERS, Stop, peer_key, timed};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roaming_proto::common::v1::ConversationType;
use roaming_proto::history::v1 as hpb;
use roaming_testkit::{TestApp, new_message};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub async fn writer(app: Arc<TestApp>, history: Arc<History>, w: usize, stop: Stop, seed: u64) {
    let client = app.service().await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    let mut sent: Vec<(usize, Vec<hpb::NewMessage>)> = Vec::new();
    let mut mine: Vec<usize> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let (messages, retry_of) = if !sent.is_empty() && rng.random_bool(0.1) {
            let (i, m) = &sent[rng.random_range(0..sent.len())];
            (m.clone(), Some(*i))
        } else {
            let mut batch = Vec::new();
            for _ in 0..rng.random_range(1..=3) {
                n += 1;
                let cid = format!("w{w}-{n}");
                let m = if rng.random_bool(0.7) {
                    let (a, b) = PEERS[rng.random_range(0..PEERS.len())];
                    let (s, r) = if rng.random_bool(0.5) { (a, b) } else { (b, a) };
                    new_message(ConversationType::Peer, s, r, &cid, &cid)
                } else {
                    let s = MEMBERS[rng.random_range(0..MEMBERS.len())];
                    new_message(ConversationType::Group, s, GROUP, &cid, &cid)
                };
                batch.push(m);
            }
            if rng.random_bool(0.05) {
                // The same message twice in one batch: stored once.
                batch.push(batch[0].clone());
            }
            (batch, None)
        };
        let batch: Vec<(String, String, String)> = messages
            .iter()
            .map(|m| {
                let key = if m.conversation_type == ConversationType::Peer as i32 {
                    peer_key(&m.sender, &m.recipient)
                } else {
                    format!("g:{}", m.recipient)
                };
                (key, m.sender.clone(), m.client_msg_id.clone())
            })
            .collect();
        app.clock.advance(1);
        let invoke = history.now();
        let r = timed(
            client
                .history()
                .append_messages(hpb::AppendMessagesRequest {
                    messages: messages.clone(),
                }),
        )
        .await;
        let complete = history.now();
        let mut results = Vec::new();
        if let Ok(resp) = &r {
            for (res, m) in resp.get_ref().results.iter().zip(&messages) {
                let msg = res.message.clone().unwrap_or_default();
                results.push((Msg::of(&m.sender, &msg).0, res.duplicate));
            }
        }
        let (outcome, code) = outcome_of(&r.as_ref().map(|_| ()).map_err(Clone::clone));
        let mut ops = history.ops.lock().unwrap();
        let index = ops.len();
        if outcome == Outcome::Ok {
            let mut known = history.known.lock().unwrap();
            for (m, dup) in &results {
                if !dup {
                    known.entry(m.key.clone()).or_default().push(m.clone());
                }
            }
            if retry_of.is_none() {
                sent.push((index, messages));
                mine.push(index);
            }
        }
        ops.push(Op {
            process: format!("gateway/{w}"),
            user: "gateway".into(),
            invoke,
            complete,
            outcome,
            code,
            detail: Detail::Append {
                batch,
                results,
                retry_of,
            },
        });
    }
}
