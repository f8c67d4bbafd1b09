//! Outputs stay bounded: pages end below a byte budget a default gRPC client accepts, and
//! an error quotes only a short prefix of a huge value.

use prost::Message as _;
use roaming_client::proto::common::v1::{ConversationType, MessageType};
use roaming_client::proto::conversation::v1 as cpb;
use roaming_client::proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use roaming_client::proto::history::v1 as hpb;
use roaming_client::proto::history::v1::history_service_client::HistoryServiceClient;
use roaming_domain::Limits;
use roaming_testkit::{TestApp, peer};
use std::collections::HashMap;
use tonic::Request;
use tonic::metadata::MetadataValue;

/// A message as large as the limits allow: a full body and every attribute at full size.
fn maximal(sender: &str, recipient: &str, id: &str) -> hpb::NewMessage {
    let limits = Limits::DEFAULT;
    let attributes: HashMap<String, String> = (0..limits.max_attributes)
        .map(|i| {
            let key = format!("{i:04}").repeat(limits.max_attribute_bytes / 4);
            (key, "v".repeat(limits.max_attribute_bytes))
        })
        .collect();
    hpb::NewMessage {
        conversation_type: ConversationType::Peer as i32,
        sender: sender.into(),
        recipient: recipient.into(),
        r#type: MessageType::Text as i32,
        body: vec![b'b'; limits.max_body_bytes],
        attributes,
        client_msg_id: id.into(),
    }
}

fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

#[tokio::test]
async fn pages_of_maximal_messages_end_early_below_what_a_default_client_accepts() {
    let app = TestApp::spawn().await;
    let limits = Limits::DEFAULT;
    // 50 maximal messages, about 6.5 MB: one page of 50 would be refused by a default client.
    let gateway = app.service().await;
    for chunk in 0..5 {
        let messages = (0..10)
            .map(|i| maximal("alice", "bob", &format!("big-{chunk}-{i}")))
            .collect();
        gateway
            .history()
            .append_messages(hpb::AppendMessagesRequest { messages })
            .await
            .unwrap();
    }
    // A plain tonic client with the default 4 MiB decoding limit.
    let channel = tonic::transport::Endpoint::from_shared(app.endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token = app.token("alice", false);
    let mut history = HistoryServiceClient::new(channel.clone());
    let mut stream = history
        .fetch_history(bearer(
            hpb::FetchHistoryRequest {
                conversation: Some(peer("bob")),
                page_size: 50,
                max_pages: 100,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut sizes = Vec::new();
    let mut seqs = Vec::new();
    let mut ends = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        assert!(!page.messages.is_empty(), "an empty page");
        sizes.push(page.encoded_len());
        ends.push(page.is_end);
        seqs.extend(page.messages.iter().map(|m| m.seq));
    }
    assert_eq!(
        seqs,
        (1..=50).rev().collect::<Vec<i64>>(),
        "every message once, in order"
    );
    assert!(sizes.len() >= 3, "pages: {sizes:?}");
    assert!(
        sizes.iter().all(|&s| s <= limits.max_page_bytes),
        "{sizes:?}"
    );
    assert_eq!(ends.iter().filter(|&&e| e).count(), 1);
    assert!(
        ends.last() == Some(&true),
        "only the last page is the end: {ends:?}"
    );

    // The conversation list: 30 conversations whose newest message is maximal.
    for i in 0..30 {
        gateway
            .history()
            .append_messages(hpb::AppendMessagesRequest {
                messages: vec![maximal(&format!("u{i:02}"), "carol", &format!("l-{i}"))],
            })
            .await
            .unwrap();
    }
    let mut list = ConversationServiceClient::new(channel);
    let carol = app.token("carol", false);
    let mut cursor = String::new();
    let mut listed = Vec::new();
    let mut list_sizes = Vec::new();
    loop {
        let page = list
            .list_conversations(bearer(
                cpb::ListConversationsRequest {
                    page_size: 50,
                    cursor: cursor.clone(),
                    ..Default::default()
                },
                &carol,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(!page.conversations.is_empty());
        list_sizes.push(page.encoded_len());
        listed.extend(
            page.conversations
                .iter()
                .map(|c| c.conversation.clone().unwrap().id),
        );
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    let mut unique = listed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 30, "every conversation once: {listed:?}");
    assert_eq!(listed.len(), 30);
    assert!(list_sizes.len() >= 2, "list pages: {list_sizes:?}");
    assert!(
        list_sizes.iter().all(|&s| s <= limits.max_page_bytes),
        "{list_sizes:?}"
    );
    println!(
        "abuse[outputs]: 50 maximal messages came as {} pages of {:?} bytes; 30 maximal list \
         entries as {} pages of {:?} bytes (budget {})",
        sizes.len(),
        sizes,
        list_sizes.len(),
        list_sizes,
        limits.max_page_bytes
    );
}

#[tokio::test]
async fn an_error_quotes_only_a_short_prefix_of_a_huge_value() {
    let app = TestApp::spawn().await;
    let mut m = maximal("alice", "bob", "huge-key");
    m.attributes = HashMap::from([("k".repeat(1_000_000), "v".into())]);
    let status = app
        .service()
        .await
        .history()
        .append_messages(hpb::AppendMessagesRequest { messages: vec![m] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("messages[0].attributes["),
        "{}",
        status.message()
    );
    assert!(
        status.message().len() < 200,
        "{} bytes of message",
        status.message().len()
    );
    println!(
        "abuse[outputs]: a 1,000,000-byte attribute key is refused with a {}-byte message",
        status.message().len()
    );
}
