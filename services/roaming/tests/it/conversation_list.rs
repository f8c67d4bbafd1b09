//! ListConversations: both sides of a peer conversation, order, defaults, the
//! activity window, the types filter, invalid input and stable paging.

use crate::helpers::*;
use roaming_client::Client;
use roaming_client::proto::common::v1::{ConversationRef, ConversationType};
use roaming_client::proto::conversation::v1 as cpb;
use roaming_testkit::Clock;
use std::collections::HashSet;
use std::time::Duration;
use tonic::Code;

async fn list(
    client: &Client,
    request: cpb::ListConversationsRequest,
) -> Result<cpb::ListConversationsResponse, tonic::Status> {
    client
        .conversations()
        .list_conversations(request)
        .await
        .map(|r| r.into_inner())
}

/// The first page with every default.
async fn first_page(app: &TestApp, user: &str) -> cpb::ListConversationsResponse {
    list(&app.user(user).await, Default::default())
        .await
        .expect("list")
}

/// The conversations of a page, as the reader names them.
fn refs(page: &cpb::ListConversationsResponse) -> Vec<ConversationRef> {
    page.conversations
        .iter()
        .map(|c| c.conversation.clone().expect("conversation"))
        .collect()
}

/// The ids of a page's conversations.
fn ids(page: &cpb::ListConversationsResponse) -> Vec<String> {
    refs(page).into_iter().map(|c| c.id).collect()
}

/// Follows `next_cursor` from `request` until it is empty; returns every page.
async fn all_pages(
    client: &Client,
    request: cpb::ListConversationsRequest,
) -> Vec<cpb::ListConversationsResponse> {
    let mut pages = Vec::new();
    let mut request = request;
    loop {
        let page = list(client, request.clone()).await.expect("list page");
        let cursor = page.next_cursor.clone();
        pages.push(page);
        assert!(pages.len() <= 100, "paging does not end");
        if cursor.is_empty() {
            return pages;
        }
        request.cursor = cursor;
    }
}

/// `n` peer conversations of alice with `u00`, `u01`, ..., each one second newer than the
/// one before (so `u{n-1}` is the most recent).
async fn peers_one_second_apart(app: &TestApp, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("u{i:02}");
        app.peer(&name, "alice", &format!("hello from {name}"))
            .await;
        app.clock.advance(1000);
        names.push(name);
    }
    names
}

fn types(kinds: &[ConversationType]) -> Vec<i32> {
    kinds.iter().map(|k| *k as i32).collect()
}

#[tokio::test]
async fn both_participants_see_one_peer_conversation_named_after_the_other_side() {
    let app = TestApp::spawn().await;
    app.peer("alice", "bob", "hi bob").await;
    app.clock.advance(5000);
    let latest = app.peer("bob", "alice", "hi alice").await;

    let alice = first_page(&app, "alice").await;
    assert_eq!(refs(&alice), vec![peer("bob")]);
    let entry = &alice.conversations[0];
    let last = entry.last_message.clone().expect("last_message");
    assert_eq!(last.msg_id, latest.msg_id);
    assert_eq!(bodies(std::slice::from_ref(&last)), vec!["hi alice"]);
    assert_eq!(last.conversation, Some(peer("bob")));
    assert_eq!(last.sender, "bob");
    assert_eq!(last.recipient, "alice");
    assert_eq!(last.seq, 2);
    assert_eq!(entry.last_activity_ms, latest.server_time_ms);
    assert!(alice.next_cursor.is_empty());

    let bob = first_page(&app, "bob").await;
    assert_eq!(refs(&bob), vec![peer("alice")]);
    let entry = &bob.conversations[0];
    let last = entry.last_message.clone().expect("last_message");
    assert_eq!(last.msg_id, latest.msg_id);
    assert_eq!(last.conversation, Some(peer("alice")));
    assert_eq!(entry.last_activity_ms, latest.server_time_ms);

    // Somebody who takes no part sees nothing.
    assert!(first_page(&app, "carol").await.conversations.is_empty());
}

#[tokio::test]
async fn a_group_entry_carries_the_group_id_and_its_newest_message() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "team", &["alice", "bob"])
        .await;
    app.send(ConversationType::Group, "alice", "team", "first")
        .await;
    app.clock.advance(1000);
    let latest = app
        .send(ConversationType::Group, "bob", "team", "second")
        .await;
    for user in ["alice", "bob"] {
        let page = first_page(&app, user).await;
        assert_eq!(
            refs(&page),
            vec![conv(ConversationType::Group, "team")],
            "{user}"
        );
        let last = page.conversations[0].last_message.clone().unwrap();
        assert_eq!(last.msg_id, latest.msg_id, "{user}");
        assert_eq!(
            last.conversation,
            Some(conv(ConversationType::Group, "team"))
        );
        assert_eq!(
            page.conversations[0].last_activity_ms,
            latest.server_time_ms
        );
    }
}

#[tokio::test]
async fn conversations_are_listed_most_recently_active_first() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "team", &["alice", "bob"])
        .await;
    app.peer("alice", "bob", "1").await;
    app.clock.advance(1000);
    app.peer("carol", "alice", "2").await;
    app.clock.advance(1000);
    app.send(ConversationType::Group, "bob", "team", "3").await;
    app.clock.advance(1000);
    app.peer("dave", "alice", "4").await;
    app.clock.advance(1000);
    // Bob answers: the oldest conversation becomes the most recent.
    app.peer("bob", "alice", "5").await;

    let page = first_page(&app, "alice").await;
    assert_eq!(
        refs(&page),
        vec![
            peer("bob"),
            peer("dave"),
            conv(ConversationType::Group, "team"),
            peer("carol"),
        ]
    );
    let times: Vec<i64> = page
        .conversations
        .iter()
        .map(|c| c.last_activity_ms)
        .collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
    for c in &page.conversations {
        assert_eq!(
            c.last_activity_ms,
            c.last_message.as_ref().unwrap().server_time_ms
        );
    }
}

#[tokio::test]
async fn ties_in_last_activity_are_broken_deterministically_by_conversation() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "g1", &["alice"])
        .await;
    app.add_members(ConversationType::Group, "g2", &["alice"])
        .await;
    // Every message at the same server time.
    for name in ["zed", "bob", "mia", "carl"] {
        app.peer(name, "alice", "same time").await;
    }
    app.send(ConversationType::Group, "alice", "g2", "same time")
        .await;
    app.send(ConversationType::Group, "alice", "g1", "same time")
        .await;

    let client = app.user("alice").await;
    let whole = list(
        &client,
        cpb::ListConversationsRequest {
            page_size: 50,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(whole.conversations.len(), 6);
    let time = whole.conversations[0].last_activity_ms;
    assert!(
        whole
            .conversations
            .iter()
            .all(|c| c.last_activity_ms == time)
    );
    let order = refs(&whole);
    let distinct: HashSet<(i32, String)> = order.iter().map(|c| (c.r#type, c.id.clone())).collect();
    assert_eq!(distinct.len(), 6);

    // The same order every time, and paging one at a time walks exactly that order.
    for _ in 0..3 {
        let again = list(
            &client,
            cpb::ListConversationsRequest {
                page_size: 50,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(refs(&again), order);
    }
    let pages = all_pages(
        &client,
        cpb::ListConversationsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    let paged: Vec<ConversationRef> = pages.iter().flat_map(refs).collect();
    assert_eq!(paged, order);
    let pages = all_pages(
        &client,
        cpb::ListConversationsRequest {
            page_size: 4,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(pages.iter().flat_map(refs).collect::<Vec<_>>(), order);
}

#[tokio::test]
async fn by_default_ten_of_twelve_conversations_are_listed_and_the_next_page_has_the_rest() {
    let app = TestApp::spawn().await;
    let names = peers_one_second_apart(&app, 12).await;
    let client = app.user("alice").await;
    let first = list(&client, Default::default()).await.unwrap();
    let newest_first: Vec<String> = names.iter().rev().cloned().collect();
    assert_eq!(ids(&first), newest_first[..10].to_vec());
    assert!(!first.next_cursor.is_empty());
    let second = list(
        &client,
        cpb::ListConversationsRequest {
            cursor: first.next_cursor.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&second), newest_first[10..].to_vec());
    assert!(second.next_cursor.is_empty());
}

#[tokio::test]
async fn the_default_page_size_is_a_server_setting() {
    let app = TestApp::spawn_with(|c| c.conversation_page_size = 3).await;
    peers_one_second_apart(&app, 5).await;
    let client = app.user("alice").await;
    let pages = all_pages(&client, Default::default()).await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.conversations.len()).collect();
    assert_eq!(sizes, vec![3, 2]);
    // An explicit page_size still wins.
    let page = list(
        &client,
        cpb::ListConversationsRequest {
            page_size: 5,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(page.conversations.len(), 5);
    assert!(page.next_cursor.is_empty());
}

#[tokio::test]
async fn a_conversation_last_active_eight_days_ago_is_listed_only_with_an_older_active_since_ms() {
    let app = TestApp::spawn().await;
    let old = app.peer("old", "alice", "long ago").await;
    app.clock.advance(8 * DAY_MS);
    app.peer("recent", "alice", "just now").await;
    let now = app.clock.now_ms();

    assert_eq!(ids(&first_page(&app, "alice").await), vec!["recent"]);

    let client = app.user("alice").await;
    let since = |active_since_ms: i64| cpb::ListConversationsRequest {
        active_since_ms,
        ..Default::default()
    };
    let wider = list(&client, since(now - 9 * DAY_MS)).await.unwrap();
    assert_eq!(ids(&wider), vec!["recent", "old"]);
    // The window's start is inclusive.
    let exact = list(&client, since(old.server_time_ms)).await.unwrap();
    assert_eq!(ids(&exact), vec!["recent", "old"]);
    let just_after = list(&client, since(old.server_time_ms + 1)).await.unwrap();
    assert_eq!(ids(&just_after), vec!["recent"]);
    // A narrower window than the default works as well.
    let narrow = list(&client, since(now + 1)).await.unwrap();
    assert!(narrow.conversations.is_empty());
}

#[tokio::test]
async fn a_conversation_six_days_old_is_within_the_default_window() {
    let app = TestApp::spawn().await;
    app.peer("six", "alice", "six days ago").await;
    app.clock.advance(6 * DAY_MS);
    assert_eq!(ids(&first_page(&app, "alice").await), vec!["six"]);
    app.clock.advance(2 * DAY_MS);
    assert!(first_page(&app, "alice").await.conversations.is_empty());
}

#[tokio::test]
async fn the_default_window_is_a_server_setting() {
    let app = TestApp::spawn_with(|c| {
        c.conversation_window = Duration::from_millis(DAY_MS as u64).into()
    })
    .await;
    app.peer("two_days", "alice", "old").await;
    app.clock.advance(DAY_MS);
    app.peer("yesterday", "alice", "not so old").await;
    app.clock.advance(DAY_MS / 2);
    app.peer("today", "alice", "new").await;
    app.clock.advance(DAY_MS / 2 - 1);
    assert_eq!(
        ids(&first_page(&app, "alice").await),
        vec!["today", "yesterday"]
    );
    app.clock.advance(2);
    assert_eq!(ids(&first_page(&app, "alice").await), vec!["today"]);
    let all = list(
        &app.user("alice").await,
        cpb::ListConversationsRequest {
            active_since_ms: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&all), vec!["today", "yesterday", "two_days"]);
}

#[tokio::test]
async fn chatrooms_are_listed_only_when_asked_for() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "team", &["alice"])
        .await;
    app.add_members(ConversationType::Chatroom, "lobby", &["alice"])
        .await;
    app.peer("bob", "alice", "peer").await;
    app.clock.advance(1000);
    app.send(ConversationType::Group, "alice", "team", "group")
        .await;
    app.clock.advance(1000);
    app.send(ConversationType::Chatroom, "alice", "lobby", "room")
        .await;

    let group = conv(ConversationType::Group, "team");
    let room = conv(ConversationType::Chatroom, "lobby");
    let client = app.user("alice").await;
    let with = |kinds: &[ConversationType]| cpb::ListConversationsRequest {
        types: types(kinds),
        ..Default::default()
    };

    let default = list(&client, Default::default()).await.unwrap();
    assert_eq!(refs(&default), vec![group.clone(), peer("bob")]);
    let explicit_default = list(
        &client,
        with(&[ConversationType::Peer, ConversationType::Group]),
    )
    .await
    .unwrap();
    assert_eq!(refs(&explicit_default), refs(&default));

    let rooms = list(&client, with(&[ConversationType::Chatroom]))
        .await
        .unwrap();
    assert_eq!(refs(&rooms), vec![room.clone()]);
    assert_eq!(
        rooms.conversations[0]
            .last_message
            .as_ref()
            .unwrap()
            .conversation,
        Some(room.clone())
    );

    let everything = list(
        &client,
        with(&[
            ConversationType::Chatroom,
            ConversationType::Peer,
            ConversationType::Group,
        ]),
    )
    .await
    .unwrap();
    assert_eq!(refs(&everything), vec![room, group.clone(), peer("bob")]);

    let peers = list(
        &client,
        with(&[ConversationType::Peer, ConversationType::Peer]),
    )
    .await
    .unwrap();
    assert_eq!(refs(&peers), vec![peer("bob")]);
    let groups = list(&client, with(&[ConversationType::Group]))
        .await
        .unwrap();
    assert_eq!(refs(&groups), vec![group]);
}

#[tokio::test]
async fn a_page_size_above_fifty_is_invalid_and_fifty_is_accepted() {
    let app = TestApp::spawn().await;
    peers_one_second_apart(&app, 3).await;
    let client = app.user("alice").await;
    let too_big = list(
        &client,
        cpb::ListConversationsRequest {
            page_size: 51,
            ..Default::default()
        },
    )
    .await;
    assert_status(too_big, Code::InvalidArgument, "page_size");
    let fifty = list(
        &client,
        cpb::ListConversationsRequest {
            page_size: 50,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(fifty.conversations.len(), 3);
}

#[tokio::test]
async fn a_negative_active_since_ms_is_invalid() {
    let app = TestApp::spawn().await;
    let result = list(
        &app.user("alice").await,
        cpb::ListConversationsRequest {
            active_since_ms: -1,
            ..Default::default()
        },
    )
    .await;
    assert_status(result, Code::InvalidArgument, "active_since_ms");
}

#[tokio::test]
async fn unknown_or_unspecified_conversation_types_are_invalid() {
    let app = TestApp::spawn().await;
    let client = app.user("alice").await;
    for bad in [
        vec![99],
        vec![ConversationType::Unspecified as i32],
        vec![ConversationType::Peer as i32, 99],
        vec![ConversationType::Group as i32, 0],
        vec![-1],
    ] {
        let result = list(
            &client,
            cpb::ListConversationsRequest {
                types: bad.clone(),
                ..Default::default()
            },
        )
        .await;
        assert_status(result, Code::InvalidArgument, "types");
    }
}

#[tokio::test]
async fn a_malformed_or_altered_cursor_is_invalid() {
    let app = TestApp::spawn().await;
    peers_one_second_apart(&app, 3).await;
    let client = app.user("alice").await;
    let first = list(
        &client,
        cpb::ListConversationsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let cursor = first.next_cursor.clone();
    assert!(!cursor.is_empty());

    let mut altered: Vec<char> = cursor.chars().collect();
    let middle = altered.len() / 2;
    altered[middle] = if altered[middle] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    let truncated = cursor[..cursor.len() - 4].to_owned();
    let extended = format!("{cursor}AAAA");

    for bad in [
        "not a cursor!".to_owned(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        altered,
        truncated,
        extended,
    ] {
        let result = list(
            &client,
            cpb::ListConversationsRequest {
                page_size: 1,
                cursor: bad.clone(),
                ..Default::default()
            },
        )
        .await;
        assert_status(result, Code::InvalidArgument, "cursor");
    }
    // The genuine cursor still works.
    let second = list(
        &client,
        cpb::ListConversationsRequest {
            page_size: 1,
            cursor,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(second.conversations.len(), 1);
}

#[tokio::test]
async fn a_cursor_reused_with_other_types_or_another_window_is_invalid() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Chatroom, "lobby", &["alice"])
        .await;
    app.send(ConversationType::Chatroom, "alice", "lobby", "room")
        .await;
    peers_one_second_apart(&app, 3).await;
    let client = app.user("alice").await;
    let first = list(
        &client,
        cpb::ListConversationsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let cursor = first.next_cursor.clone();
    assert!(!cursor.is_empty());

    for other in [
        vec![ConversationType::Chatroom],
        vec![ConversationType::Peer],
        vec![
            ConversationType::Peer,
            ConversationType::Group,
            ConversationType::Chatroom,
        ],
    ] {
        let result = list(
            &client,
            cpb::ListConversationsRequest {
                page_size: 1,
                cursor: cursor.clone(),
                types: types(&other),
                ..Default::default()
            },
        )
        .await;
        assert_status(result, Code::InvalidArgument, "cursor");
    }
    let other_window = list(
        &client,
        cpb::ListConversationsRequest {
            page_size: 1,
            cursor: cursor.clone(),
            active_since_ms: 1,
            ..Default::default()
        },
    )
    .await;
    assert_status(other_window, Code::InvalidArgument, "cursor");

    // The same set of types, spelled out in another order, is the same listing.
    let same = list(
        &client,
        cpb::ListConversationsRequest {
            page_size: 1,
            cursor,
            types: types(&[ConversationType::Group, ConversationType::Peer]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&same), vec!["u01"]);
}

#[tokio::test]
async fn paging_twenty_five_conversations_ten_at_a_time_repeats_none_and_loses_none() {
    let app = TestApp::spawn().await;
    let names = peers_one_second_apart(&app, 25).await;
    let client = app.user("alice").await;
    let pages = all_pages(
        &client,
        cpb::ListConversationsRequest {
            page_size: 10,
            ..Default::default()
        },
    )
    .await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.conversations.len()).collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    assert!(pages[..2].iter().all(|p| !p.next_cursor.is_empty()));
    assert!(pages[2].next_cursor.is_empty());
    let paged: Vec<String> = pages.iter().flat_map(ids).collect();
    let newest_first: Vec<String> = names.iter().rev().cloned().collect();
    assert_eq!(paged, newest_first);
}

#[tokio::test]
async fn a_full_last_page_has_an_empty_next_cursor() {
    let app = TestApp::spawn().await;
    peers_one_second_apart(&app, 20).await;
    let client = app.user("alice").await;
    let pages = all_pages(
        &client,
        cpb::ListConversationsRequest {
            page_size: 10,
            ..Default::default()
        },
    )
    .await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.conversations.len()).collect();
    assert_eq!(sizes, vec![10, 10]);
    assert!(pages[1].next_cursor.is_empty());
}

#[tokio::test]
async fn paging_stays_stable_when_conversations_get_new_messages_meanwhile() {
    let app = TestApp::spawn().await;
    let names = peers_one_second_apart(&app, 25).await;
    // Newest first: u24..u15 | u14..u05 | u04..u00.
    let client = app.user("alice").await;
    let request = cpb::ListConversationsRequest {
        page_size: 10,
        ..Default::default()
    };
    let first = list(&client, request.clone()).await.unwrap();
    assert_eq!(ids(&first)[0], "u24");
    assert_eq!(ids(&first)[9], "u15");

    // Meanwhile, one conversation of the third page and one already seen get new messages.
    app.clock.advance(1000);
    app.peer("u02", "alice", "u02 again").await;
    app.clock.advance(1000);
    app.peer("alice", "u20", "u20 again").await;

    let mut seen: Vec<String> = ids(&first);
    let mut cursor = first.next_cursor.clone();
    let mut pages = 1;
    while !cursor.is_empty() {
        let page = list(
            &client,
            cpb::ListConversationsRequest {
                cursor: cursor.clone(),
                ..request.clone()
            },
        )
        .await
        .unwrap();
        seen.extend(ids(&page));
        cursor = page.next_cursor.clone();
        pages += 1;
        assert!(pages <= 10, "paging does not end");
    }
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "a conversation repeated: {seen:?}"
    );
    for name in &names {
        if name != "u02" {
            assert!(seen.contains(name), "{name} was skipped: {seen:?}");
        }
    }

    // A new first page shows the moved conversations on top.
    let again = list(&client, request).await.unwrap();
    assert_eq!(ids(&again)[..3].to_vec(), vec!["u20", "u02", "u24"]);
    let top = again.conversations[0].last_message.as_ref().unwrap();
    assert_eq!(bodies(std::slice::from_ref(top)), vec!["u20 again"]);
}

#[tokio::test]
async fn later_pages_keep_the_window_of_the_first_page() {
    let app = TestApp::spawn().await;
    peers_one_second_apart(&app, 3).await;
    let client = app.user("alice").await;
    let first = list(
        &client,
        cpb::ListConversationsRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&first), vec!["u02", "u01"]);
    // Time passes beyond the window; the listing already under way still ends.
    app.clock.advance(8 * DAY_MS);
    let second = list(
        &client,
        cpb::ListConversationsRequest {
            page_size: 2,
            cursor: first.next_cursor.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&second), vec!["u00"]);
    assert!(second.next_cursor.is_empty());
    assert!(first_page(&app, "alice").await.conversations.is_empty());
}

#[tokio::test]
async fn a_service_token_lists_the_conversations_of_the_user_it_acts_for() {
    let app = TestApp::spawn().await;
    app.peer("alice", "bob", "hi").await;
    app.peer("carol", "dave", "not alice's").await;
    let page = list(&app.service_as("alice").await, Default::default())
        .await
        .unwrap();
    assert_eq!(refs(&page), vec![peer("bob")]);
    let without_user = list(&app.service().await, Default::default()).await;
    assert_status(without_user, Code::InvalidArgument, "x-roaming-user");
}
