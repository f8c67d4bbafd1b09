//! A walk-through of the original SDK page's flows against a running Roaming server: list
//! conversations with their unread badges, page a conversation's history both ways, mark it
//! read, pin and label it, edit and recall a message (with a service token) and see the
//! device's sync apply both, remove messages by id and by time, delete a conversation
//! locally, and remove it on the server.
//!
//! Start a server and mint tokens (from the repository root):
//!
//! ```text
//! export ROAMING_JWT_SECRET=dev-secret-change-me-0123456789abcdef
//! cargo run -p roaming -- serve &                       # 127.0.0.1:50051
//! export ROAMING_TOKEN=$(cargo run -q -p roaming -- token --sub alice)
//! export ROAMING_SERVICE_TOKEN=$(cargo run -q -p roaming -- token --sub gateway --role service)
//! cargo run -p roaming-client --example walkthrough
//! ```
//!
//! Settings, all environment variables:
//! - `ROAMING_TOKEN` (required): the user's token.
//! - `ROAMING_ENDPOINT`: the server (default `http://127.0.0.1:50051`).
//! - `ROAMING_USER`: that user's id (default `alice`), used when seeding.
//! - `ROAMING_PEER`: the other user of the conversation walked through (default `bob`).
//! - `ROAMING_SERVICE_TOKEN`: when set, 12 messages between the two users are stored first
//!   through `append`, so that there is something to walk through, and the gateway edits
//!   and recalls one of the user's messages (acting for the user, within the recall window).
//! - `ROAMING_LOCAL_DB`: the local store's SQLite file (default: a file in the temp folder).

use futures::TryStreamExt;
use roaming_client::{
    Client, ConversationRef, ConversationType, Direction, LocalQuery, LocalStore, Message,
    NewMessage, RemovalScope, StoreEvent,
};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn show(title: &str, messages: &[Message]) {
    let texts: Vec<_> = messages
        .iter()
        .map(|m| format!("#{} {}", m.seq, m.text().unwrap_or("<binary>")))
        .collect();
    println!("{title}: {}", texts.join(", "));
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = env_or("ROAMING_ENDPOINT", "http://127.0.0.1:50051");
    let token = std::env::var("ROAMING_TOKEN")
        .map_err(|_| "set ROAMING_TOKEN to a user token (`roaming token --sub alice`)")?;
    let user = env_or("ROAMING_USER", "alice");
    let peer = env_or("ROAMING_PEER", "bob");
    let db = std::env::var("ROAMING_LOCAL_DB")
        .map(Into::into)
        .unwrap_or_else(|_| {
            std::env::temp_dir().join(format!("roaming-walkthrough-{user}.sqlite3"))
        });

    let service_token = std::env::var("ROAMING_SERVICE_TOKEN").ok();
    let mut gateway = None;
    if let Some(service_token) = &service_token {
        let seeding = Client::builder(&endpoint)
            .token(service_token)
            .connect()
            .await?;
        let run = std::process::id();
        for i in 0..12 {
            let (from, to) = if i % 2 == 0 {
                (&user, &peer)
            } else {
                (&peer, &user)
            };
            let message =
                NewMessage::new(ConversationType::Peer, from, to, format!("walk-{run}-{i}"))
                    .text(format!("message {i}"));
            seeding.append([message]).await?;
            // Distinct storage times, so that removal by time has something to split.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        println!("seeded 12 messages");
        // Recall and edit are the sender's: the gateway acts for the user.
        gateway = Some(seeding.with_credentials(Some(service_token), Some(&user))?);
    }

    // Connect as the user, keeping a local copy as the SDK does on a device.
    let client = Client::builder(&endpoint)
        .token(token)
        .local_store(LocalStore::open(&db)?)
        .connect()
        .await?;
    let conversation = ConversationRef::peer(&peer);
    // The device's first sync: a snapshot of the user's conversations (a store that held an
    // earlier copy is reset to it); later syncs apply only what changed.
    client.sync().await?;

    // 1. Fetch the conversation list from the server (every page; saved locally).
    let conversations: Vec<_> = client
        .list_conversations()
        .conversations()
        .try_collect()
        .await?;
    println!("{} conversation(s) on the server:", conversations.len());
    for c in &conversations {
        let last = c.last_message.as_ref().and_then(|m| m.text()).unwrap_or("");
        let pin = if c.state.pinned() { " [pinned]" } else { "" };
        println!(
            "  {}{pin} (last: {last:?}, unread: {})",
            c.conversation, c.state.unread_count
        );
    }

    // 2. Page the history: newest first (the SDK's default), then oldest first.
    let newest = client
        .fetch_history(conversation.clone())
        .page_size(5)
        .page()
        .await?;
    show("newest page", &newest.messages);
    let older = client
        .fetch_history(conversation.clone())
        .page_size(5)
        .cursor(newest.next_cursor.clone())
        .page()
        .await?;
    show("the page before it", &older.messages);
    let oldest = client
        .fetch_history(conversation.clone())
        .direction(Direction::Forward)
        .page_size(5)
        .page()
        .await?;
    show("oldest page", &oldest.messages);
    // Or let the stream follow the cursors through the whole history.
    let everything: Vec<_> = client
        .fetch_history(conversation.clone())
        .direction(Direction::Forward)
        .page_size(50)
        .messages()
        .try_collect()
        .await?;
    show("whole history", &everything);

    // 3. Read state, on every device of the user: read up to the newest message (the peer
    //    sees it as a receipt), pin the conversation, label it.
    let read = client.mark_read(&conversation, None).await?;
    println!(
        "marked read up to seq {}: {} unread",
        read.read_seq, read.unread_count
    );
    client.pin(&conversation, true).await?;
    let marks = client
        .mark_conversation(&conversation, ["walkthrough"], Vec::<String>::new())
        .await?;
    let pinned: Vec<_> = client
        .list_conversations()
        .pinned_only(true)
        .conversations()
        .try_collect()
        .await?;
    println!(
        "pinned: {:?}; marks of {conversation}: {marks:?}",
        pinned
            .iter()
            .map(|c| c.conversation.to_string())
            .collect::<Vec<_>>()
    );

    // 4. Edit and recall (the gateway, for the user): every device learns both by sync.
    let own: Vec<&Message> = everything.iter().filter(|m| m.sender == user).collect();
    if let (Some(gateway), [.., edit_this, recall_this]) = (&gateway, own.as_slice()) {
        let mut events = client.events()?;
        let edited = gateway
            .edit(
                &conversation,
                &edit_this.msg_id,
                "message edited",
                Default::default(),
            )
            .await?;
        gateway.recall(&conversation, &recall_this.msg_id).await?;
        println!(
            "edited #{} (version {}), recalled #{}",
            edited.seq, edited.edit_version, recall_this.seq
        );
        client.sync().await?;
        while let Ok(event) = events.try_recv() {
            match event {
                StoreEvent::MessagesEdited { messages, .. } => {
                    show("this device's sync applied the edit", &messages)
                }
                StoreEvent::MessagesRecalled { msg_ids, .. } => {
                    println!("this device's sync applied the recall of {msg_ids:?}")
                }
                _ => {}
            }
        }
    }

    // 5. One-way removal by id: the newest message disappears for this user only.
    if let Some(newest) = newest.messages.first() {
        let results = client
            .remove_messages(&conversation, [newest.msg_id.clone()])
            .await?;
        println!("removed by id: {results:?}");
    }

    // 6. One-way removal by time: everything stored at or before the third oldest message.
    if let Some(third) = everything.get(2) {
        client
            .remove_messages_before(&conversation, third.server_time_ms)
            .await?;
        println!("removed everything up to {} ms", third.server_time_ms);
    }
    let left: Vec<_> = client
        .fetch_history(conversation.clone())
        .messages()
        .try_collect()
        .await?;
    show("what the server still shows", &left);

    // 7. Delete the conversation locally only (the SDK's deleteConversation): the server and
    //    the user's other devices keep it.
    let local = client
        .local_history(&conversation, LocalQuery::default())
        .await?;
    show("local copy before", &local);
    client
        .delete_local_conversation(&conversation, true)
        .await?;
    println!(
        "local conversations after deleting locally: {}",
        client.local_conversations().await?.len()
    );

    // 8. Remove the conversation on the server, one-way, with its messages.
    client
        .remove_conversation(&conversation, true, RemovalScope::ForMe)
        .await?;
    let remaining: Vec<_> = client
        .list_conversations()
        .conversations()
        .try_collect()
        .await?;
    println!(
        "after removing {conversation} on the server: {} conversation(s)",
        remaining.len()
    );
    Ok(())
}
