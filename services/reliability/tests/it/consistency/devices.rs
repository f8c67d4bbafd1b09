//! The users' devices: reads following cursors, lists, removals by id, by time and of conversations.

use super::history::{Detail, History, Msg, Op, Outcome, Start, outcome_of};
use super::support::{Stop, conversations_of, key_of, ref_of, timed};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roaming_proto::conversation::v1 as cpb;
use roaming_proto::history::v1 as hpb;
use roaming_testkit::TestApp;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// One read call: all its pages.
#[allow(clippy::too_many_arguments)]
pub async fn read_call(
    client: &roaming_client::Client,
    history: &History,
    process: &str,
    user: &str,
    key: &str,
    forward: bool,
    start: Start,
    cursor: String,
    page_size: u32,
    max_pages: u32,
    chain: usize,
) -> (Outcome, String) {
    let req = hpb::FetchHistoryRequest {
        conversation: Some(ref_of(user, key)),
        direction: if forward {
            hpb::Direction::Forward
        } else {
            hpb::Direction::Backward
        } as i32,
        cursor,
        page_size,
        max_pages,
        ..Default::default()
    };
    let invoke = history.now();
    let mut messages = Vec::new();
    let mut pages = Vec::new();
    let mut next = String::new();
    let mut labels = Vec::new();
    let r: Result<(), tonic::Status> = timed(async {
        let mut stream = client.history().fetch_history(req).await?.into_inner();
        while let Some(page) = stream.message().await? {
            pages.push((page.messages.len(), page.is_end));
            for m in &page.messages {
                let (msg, label) = Msg::of(user, m);
                labels.extend(label);
                messages.push(msg);
            }
            next = page.next_cursor;
        }
        Ok(())
    })
    .await;
    let complete = history.now();
    let (outcome, code) = outcome_of(&r);
    let completed = r.is_ok();
    history.push(Op {
        process: process.into(),
        user: user.into(),
        invoke,
        complete,
        outcome,
        code,
        detail: Detail::Read {
            key: key.into(),
            forward,
            start,
            messages,
            pages,
            complete: completed,
            chain,
        },
    });
    history.mislabelled.lock().unwrap().extend(labels);
    (outcome, next)
}

/// A follow-the-cursor session: 1-4 calls, each resuming where the previous one ended.
async fn read_chain(
    client: &roaming_client::Client,
    history: &History,
    process: &str,
    user: &str,
    key: &str,
    rng: &mut StdRng,
    chain: usize,
) {
    let forward = rng.random_bool(0.5);
    let mut start = Start::End;
    let mut cursor = String::new();
    for _ in 0..rng.random_range(1..=4) {
        let (outcome, next) = read_call(
            client,
            history,
            process,
            user,
            key,
            forward,
            start,
            cursor.clone(),
            rng.random_range(1..=10),
            rng.random_range(1..=3),
            chain,
        )
        .await;
        if outcome != Outcome::Ok || next.is_empty() {
            return;
        }
        // The position the cursor resumes after: the last seq this chain returned.
        let ops = history.ops.lock().unwrap();
        let last = ops.iter().rev().find_map(|o| match &o.detail {
            Detail::Read {
                chain: c, messages, ..
            } if *c == chain => Some(messages.last().map(|m| m.seq)),
            _ => None,
        });
        drop(ops);
        if let Some(Some(seq)) = last {
            start = Start::After(seq);
        }
        cursor = next;
    }
}

pub async fn list_call(
    client: &roaming_client::Client,
    history: &History,
    process: &str,
    user: &str,
) {
    let invoke = history.now();
    let mut entries = Vec::new();
    let mut labels = Vec::new();
    let r: Result<(), tonic::Status> = timed(async {
        let mut cursor = String::new();
        loop {
            let page = client
                .conversations()
                .list_conversations(cpb::ListConversationsRequest {
                    page_size: 50,
                    cursor: cursor.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            for e in &page.conversations {
                let c = e.conversation.clone().unwrap_or_default();
                let key = key_of(user, &c);
                let (m, label) = Msg::of(user, &e.last_message.clone().unwrap_or_default());
                labels.extend(label);
                entries.push((key, m, e.last_activity_ms));
            }
            if page.next_cursor.is_empty() {
                return Ok(());
            }
            cursor = page.next_cursor;
        }
    })
    .await;
    let complete = history.now();
    let (outcome, code) = outcome_of(&r);
    history.push(Op {
        process: process.into(),
        user: user.into(),
        invoke,
        complete,
        outcome,
        code,
        detail: Detail::List { entries },
    });
    history.mislabelled.lock().unwrap().extend(labels);
}

pub async fn device(
    app: Arc<TestApp>,
    history: Arc<History>,
    user: &'static str,
    d: usize,
    stop: Stop,
    seed: u64,
    chains: Arc<std::sync::atomic::AtomicUsize>,
) {
    let client = app.user(user).await;
    let process = format!("{user}/device{d}");
    let mut rng = StdRng::seed_from_u64(seed);
    let convs = conversations_of(user);
    while !stop.load(Ordering::Relaxed) {
        let key = convs[rng.random_range(0..convs.len())].clone();
        let roll = rng.random_range(0..100);
        if roll < 55 {
            let chain = chains.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            read_chain(&client, &history, &process, user, &key, &mut rng, chain).await;
        } else if roll < 70 {
            list_call(&client, &history, &process, user).await;
        } else if roll < 86 {
            // By id: 1-3 acknowledged ids of this conversation, sometimes one of another.
            let mut ids: Vec<i64> = {
                let known = history.known.lock().unwrap();
                let msgs = known.get(&key).map(Vec::as_slice).unwrap_or(&[]);
                if msgs.is_empty() {
                    Vec::new()
                } else {
                    (0..rng.random_range(1..=3))
                        .map(|_| msgs[rng.random_range(0..msgs.len())].msg_id)
                        .collect()
                }
            };
            if rng.random_bool(0.1) {
                let known = history.known.lock().unwrap();
                let other = known
                    .iter()
                    .filter(|(k, v)| **k != key && !v.is_empty())
                    .map(|(_, v)| v[0].msg_id)
                    .next();
                ids.extend(other);
            }
            if ids.is_empty() {
                continue;
            }
            let invoke = history.now();
            let r = timed(
                client
                    .history()
                    .remove_messages(hpb::RemoveMessagesRequest {
                        conversation: Some(ref_of(user, &key)),
                        msg_ids: ids.iter().map(i64::to_string).collect(),
                    }),
            )
            .await;
            let complete = history.now();
            let statuses = r
                .as_ref()
                .map(|x| x.get_ref().results.iter().map(|s| s.status).collect())
                .unwrap_or_default();
            let (outcome, code) = outcome_of(&r.map(|_| ()));
            history.push(Op {
                process: process.clone(),
                user: user.into(),
                invoke,
                complete,
                outcome,
                code,
                detail: Detail::RemoveIds { key, ids, statuses },
            });
        } else if roll < 90 {
            // By time: the time of an acknowledged message, well in the past of most.
            let time = {
                let known = history.known.lock().unwrap();
                let msgs = known.get(&key).map(Vec::as_slice).unwrap_or(&[]);
                if msgs.is_empty() {
                    continue;
                }
                // Mostly early messages, so that whole histories are not wiped every time.
                msgs[rng.random_range(0..msgs.len().div_ceil(3))].time
            };
            let invoke = history.now();
            let r = timed(client.history().remove_messages_before(
                hpb::RemoveMessagesBeforeRequest {
                    conversation: Some(ref_of(user, &key)),
                    before_time_ms: time,
                },
            ))
            .await;
            let complete = history.now();
            let (outcome, code) = outcome_of(&r.map(|_| ()));
            history.push(Op {
                process: process.clone(),
                user: user.into(),
                invoke,
                complete,
                outcome,
                code,
                detail: Detail::RemoveBefore { key, time },
            });
        } else if roll < 93 {
            let delete = rng.random_bool(0.5);
            let invoke = history.now();
            let r = timed(client.conversations().remove_conversation(
                cpb::RemoveConversationRequest {
                    conversation: Some(ref_of(user, &key)),
                    delete_messages: delete,
                    scope: cpb::RemovalScope::ForMe as i32,
                },
            ))
            .await;
            let complete = history.now();
            let (outcome, code) = outcome_of(&r.map(|_| ()));
            history.push(Op {
                process: process.clone(),
                user: user.into(),
                invoke,
                complete,
                outcome,
                code,
                detail: Detail::RemoveConversation { key, delete },
            });
        } else {
            let chain = chains.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            read_chain(&client, &history, &process, user, &key, &mut rng, chain).await;
        }
    }
}
