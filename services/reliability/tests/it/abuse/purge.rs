//! A purge for everyone with its messages erases their content from the database; the keys
//! stay, so a retried append is still a duplicate, and it comes back without content.

use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::conversation::v1 as cpb;
use roaming_client::proto::history::v1 as hpb;
use roaming_testkit::{TestApp, new_message, peer};

#[tokio::test]
async fn a_purge_with_messages_erases_bodies_and_attributes_and_a_retry_gets_no_content() {
    let app = TestApp::spawn().await;
    let gateway = app.service().await;
    let mut secret = new_message(ConversationType::Peer, "alice", "bob", "the secret", "s-1");
    secret.attributes.insert("where".into(), "the attic".into());
    gateway
        .history()
        .append_messages(hpb::AppendMessagesRequest {
            messages: vec![secret.clone()],
        })
        .await
        .unwrap();
    app.peer("bob", "alice", "another secret").await;
    app.service_as("alice")
        .await
        .conversations()
        .remove_conversation(cpb::RemoveConversationRequest {
            conversation: Some(peer("bob")),
            delete_messages: true,
            scope: cpb::RemovalScope::ForEveryone as i32,
        })
        .await
        .unwrap();

    let sql = app.sql().await;
    let rows = sql
        .query(
            "SELECT seq, octet_length(body), attributes::text FROM messages
             WHERE conv_key = 'p:alice:bob' ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<(i64, i32, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(stored, [(1, 0, "{}".into()), (2, 0, "{}".into())]);

    // The idempotency key survived: the retry is a duplicate, stores nothing, shows nothing.
    let retry = gateway
        .history()
        .append_messages(hpb::AppendMessagesRequest {
            messages: vec![secret],
        })
        .await
        .unwrap()
        .into_inner();
    let result = &retry.results[0];
    assert!(result.duplicate);
    let message = result.message.as_ref().unwrap();
    assert_eq!(message.seq, 1);
    assert!(message.body.is_empty() && message.attributes.is_empty());

    // What comes after the purge keeps its content.
    app.peer("alice", "bob", "after").await;
    let body: Vec<u8> = sql
        .query_one(
            "SELECT body FROM messages WHERE conv_key = 'p:alice:bob' AND seq = 3",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(body, b"after");
}
