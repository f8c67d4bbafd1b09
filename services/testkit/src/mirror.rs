//! What "a device's local store mirrors the server" means, checked: the store against a fresh
//! snapshot (SyncConversations without a token), a fresh FetchHistory of every listed
//! conversation, and DigestHistory over what the store holds.

use crate::TestApp;
use futures::TryStreamExt;
use roaming_client::proto::conversation::v1 as cpb;
use roaming_client::proto::history::v1 as hpb;
use roaming_client::{
    Client, Conversation, ConversationChange, ConversationRef, ConversationType, DigestBucket,
    Direction, LocalQuery, LocalStore, Message,
};
use std::collections::BTreeMap;

/// Bucket size of the digest comparison.
const BUCKET: i64 = 10;

/// `user`'s snapshot now: every listed PEER and GROUP conversation's change.
pub async fn snapshot(client: &Client) -> BTreeMap<ConversationRef, ConversationChange> {
    let mut stream = client
        .conversations()
        .sync_conversations(cpb::SyncConversationsRequest {
            sync_token: String::new(),
            page_size: 100,
        })
        .await
        .expect("snapshot")
        .into_inner();
    let mut out = BTreeMap::new();
    while let Some(page) = stream.message().await.expect("snapshot page") {
        for change in page.changes {
            let change = ConversationChange::try_from(change).expect("a typed change");
            out.insert(change.conversation.clone(), change);
        }
        if page.is_end {
            break;
        }
    }
    out
}

fn seqs(messages: &[&Message]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

/// How `store` differs from `user`'s view on the server now; empty when it mirrors it:
///
/// - its PEER and GROUP list entries are exactly the snapshot's (last message, last
///   activity, read state, unread count, receipt, pin and marks included), and it holds nothing of a conversation that is not listed;
/// - for every listed conversation it holds one complete range, from its *horizon* up to at
///   least the conversation's newest seq, and its messages from the horizon up are exactly
///   the server's (message for message); a message it holds below the horizon is the
///   server's too;
/// - every DigestHistory bucket over that range equals the store's own computation.
pub async fn mirror_differences(app: &TestApp, user: &str, store: &LocalStore) -> Vec<String> {
    let client = app.user(user).await;
    let listed = snapshot(&client).await;
    let mut diffs = Vec::new();

    let local: BTreeMap<ConversationRef, Conversation> = store
        .conversations()
        .expect("local list")
        .into_iter()
        .filter(|c| c.conversation.kind != ConversationType::Chatroom)
        .map(|c| (c.conversation.clone(), c))
        .collect();
    for (conversation, change) in &listed {
        match local.get(conversation) {
            None => diffs.push(format!("{user}: {conversation} is listed but not local")),
            Some(entry) if Some(entry) != change.entry().as_ref() => diffs.push(format!(
                "{user}: entry of {conversation}: local (activity {}, last seq {:?}, {:?}), \
                 server (activity {}, last seq {:?}, {:?})",
                entry.last_activity_ms,
                entry.last_message.as_ref().map(|m| m.seq),
                entry.state,
                change.last_activity_ms,
                change.last_message.as_ref().map(|m| m.seq),
                change.state,
            )),
            Some(_) => {}
        }
    }
    for conversation in store.stored_conversations().expect("stored") {
        if conversation.kind != ConversationType::Chatroom && !listed.contains_key(&conversation) {
            diffs.push(format!("{user}: holds {conversation}, which is not listed"));
        }
    }

    for (conversation, change) in &listed {
        let spans = store.complete_ranges(conversation).expect("spans");
        let Some(horizon) = spans.first().map(|s| *s.start()) else {
            diffs.push(format!("{user}: {conversation}: no complete range"));
            continue;
        };
        let top = *spans.last().expect("a span").end();
        if spans.len() != 1 {
            diffs.push(format!("{user}: {conversation}: holes, ranges {spans:?}"));
        }
        if top < change.last_seq {
            diffs.push(format!(
                "{user}: {conversation}: complete to {top}, newest seq {}",
                change.last_seq
            ));
        }
        let server: Vec<Message> = client
            .fetch_history(conversation.clone())
            .direction(Direction::Forward)
            .page_size(50)
            .messages()
            .try_collect()
            .await
            .expect("server history");
        let held = store
            .history(
                conversation,
                &LocalQuery {
                    direction: Direction::Forward,
                    start_msg_id: None,
                    limit: usize::MAX,
                },
            )
            .expect("local history");
        let expected: Vec<&Message> = server.iter().filter(|m| m.seq >= horizon).collect();
        let above: Vec<&Message> = held.iter().filter(|m| m.seq >= horizon).collect();
        if above != expected {
            diffs.push(format!(
                "{user}: {conversation} from seq {horizon}: local {:?}, server {:?}",
                seqs(&above),
                seqs(&expected)
            ));
        }
        for m in held.iter().filter(|m| m.seq < horizon) {
            if server.iter().find(|s| s.seq == m.seq) != Some(m) {
                diffs.push(format!(
                    "{user}: {conversation}: local seq {} below the horizon is not the server's",
                    m.seq
                ));
            }
        }
        let theirs: Vec<DigestBucket> = client
            .history()
            .digest_history(hpb::DigestHistoryRequest {
                conversation: Some(conversation.to_proto()),
                from_seq: horizon,
                to_seq: top,
                bucket_size: BUCKET,
            })
            .await
            .expect("digest")
            .into_inner()
            .buckets
            .into_iter()
            .map(DigestBucket::from)
            .collect();
        let ours = store
            .digest(conversation, horizon, top, BUCKET)
            .expect("local digest");
        if theirs != ours {
            let differing: Vec<(i64, i64)> = theirs
                .iter()
                .zip(&ours)
                .filter(|(a, b)| a != b)
                .map(|(a, _)| (a.from_seq, a.to_seq))
                .collect();
            diffs.push(format!(
                "{user}: {conversation}: digest buckets differ: {differing:?} ({} vs {} buckets)",
                theirs.len(),
                ours.len()
            ));
        }
    }
    diffs
}
