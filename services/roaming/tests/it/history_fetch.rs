//! FetchHistory: directions, anchors, pages, cursors, filters, limits.

use crate::helpers::*;
use roaming_client::proto::common::v1::{ConversationType, MessageType};
use roaming_client::proto::history::v1::{self as hpb, Direction};
use tonic::Code;

/// Stores `n` messages alice → bob with bodies "0".."n-1", 1 s apart.
async fn conversation_of(
    app: &TestApp,
    n: usize,
) -> Vec<roaming_client::proto::common::v1::Message> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            app.peer(
                if i % 2 == 0 { "alice" } else { "bob" },
                if i % 2 == 0 { "bob" } else { "alice" },
                &i.to_string(),
            )
            .await,
        );
        app.clock.advance(1_000);
    }
    out
}

fn request(direction: Direction) -> hpb::FetchHistoryRequest {
    hpb::FetchHistoryRequest {
        conversation: Some(peer("bob")),
        direction: direction as i32,
        ..Default::default()
    }
}

fn seqs(pages: &[hpb::FetchHistoryResponse]) -> Vec<i64> {
    pages
        .iter()
        .flat_map(|p| p.messages.iter().map(|m| m.seq))
        .collect()
}

#[tokio::test]
async fn the_default_is_one_backward_page_of_twenty_newest_first() {
    let app = TestApp::spawn().await;
    conversation_of(&app, 25).await;
    let alice = app.user("alice").await;
    let pages = fetch_pages(&alice, request(Direction::Unspecified))
        .await
        .unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(seqs(&pages), (6..=25).rev().collect::<Vec<_>>());
    assert!(!pages[0].is_end);
    assert!(!pages[0].next_cursor.is_empty());
    assert_eq!(
        seqs(
            &fetch_pages(&alice, request(Direction::Backward))
                .await
                .unwrap()
        ),
        seqs(&pages)
    );
}

#[tokio::test]
async fn forward_reads_oldest_first_and_ends_with_is_end() {
    let app = TestApp::spawn().await;
    conversation_of(&app, 5).await;
    let pages = fetch_pages(
        &app.user("bob").await,
        hpb::FetchHistoryRequest {
            conversation: Some(peer("alice")),
            direction: Direction::Forward as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(seqs(&pages), vec![1, 2, 3, 4, 5]);
    assert!(pages[0].is_end);
    assert!(
        pages[0]
            .messages
            .iter()
            .all(|m| m.conversation == Some(peer("alice")))
    );
}

#[tokio::test]
async fn anchors_are_exclusive_in_both_directions() {
    let app = TestApp::spawn().await;
    let msgs = conversation_of(&app, 10).await;
    let alice = app.user("alice").await;
    let anchor = msgs[4].msg_id.clone(); // seq 5
    let back = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            start_msg_id: anchor.clone(),
            page_size: 3,
            ..request(Direction::Backward)
        },
    )
    .await
    .unwrap();
    assert_eq!(seqs(&back), vec![4, 3, 2]);
    let fwd = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            start_msg_id: anchor,
            page_size: 3,
            ..request(Direction::Forward)
        },
    )
    .await
    .unwrap();
    assert_eq!(seqs(&fwd), vec![6, 7, 8]);
    let from_oldest = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            start_msg_id: msgs[0].msg_id.clone(),
            ..request(Direction::Backward)
        },
    )
    .await
    .unwrap();
    assert_eq!(from_oldest.len(), 1);
    assert!(from_oldest[0].messages.is_empty() && from_oldest[0].is_end);
}

#[tokio::test]
async fn unknown_and_foreign_anchors_are_not_found_and_malformed_ones_invalid() {
    let app = TestApp::spawn().await;
    conversation_of(&app, 3).await;
    let elsewhere = app.peer("alice", "carol", "other conversation").await;
    let alice = app.user("alice").await;
    let unknown = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            start_msg_id: "999999999".into(),
            ..request(Direction::Backward)
        },
    )
    .await;
    assert_status(unknown, Code::NotFound, "start_msg_id");
    let foreign = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            start_msg_id: elsewhere.msg_id,
            ..request(Direction::Backward)
        },
    )
    .await;
    assert_status(foreign, Code::NotFound, "start_msg_id");
    for bad in ["abc", "-5", "0", "1.5"] {
        let malformed = fetch_pages(
            &alice,
            hpb::FetchHistoryRequest {
                start_msg_id: bad.into(),
                ..request(Direction::Backward)
            },
        )
        .await;
        assert_status(malformed, Code::InvalidArgument, "start_msg_id");
    }
}

#[tokio::test]
async fn page_size_and_max_pages_have_defaults_and_limits_without_clamping() {
    let app = TestApp::spawn().await;
    conversation_of(&app, 60).await;
    let alice = app.user("alice").await;
    let at = |page_size, max_pages| hpb::FetchHistoryRequest {
        page_size,
        max_pages,
        ..request(Direction::Forward)
    };
    assert_status(
        fetch_pages(&alice, at(51, 1)).await,
        Code::InvalidArgument,
        "page_size",
    );
    assert_status(
        fetch_pages(&alice, at(10, 101)).await,
        Code::InvalidArgument,
        "max_pages",
    );
    let fifty = fetch_pages(&alice, at(50, 0)).await.unwrap();
    assert_eq!((fifty.len(), fifty[0].messages.len()), (1, 50));
    let all = fetch_pages(&alice, at(1, 100)).await.unwrap();
    assert_eq!(all.len(), 60);
    assert!(all.last().unwrap().is_end);
    assert!(all[..59].iter().all(|p| !p.is_end && p.messages.len() == 1));
    let direction = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            direction: 7,
            ..request(Direction::Forward)
        },
    )
    .await;
    assert_status(direction, Code::InvalidArgument, "direction");
}

#[tokio::test]
async fn a_stream_of_pages_resumes_from_next_cursor_with_a_new_page_size() {
    let app = TestApp::spawn().await;
    conversation_of(&app, 45).await;
    let alice = app.user("alice").await;
    let first = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            page_size: 10,
            max_pages: 3,
            ..request(Direction::Forward)
        },
    )
    .await
    .unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(seqs(&first), (1..=30).collect::<Vec<_>>());
    assert!(first.iter().all(|p| !p.is_end && !p.next_cursor.is_empty()));
    let rest = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            cursor: first[2].next_cursor.clone(),
            page_size: 7,
            max_pages: 10,
            ..request(Direction::Forward)
        },
    )
    .await
    .unwrap();
    assert_eq!(seqs(&rest), (31..=45).collect::<Vec<_>>());
    assert_eq!(rest.len(), 3);
    assert!(rest.last().unwrap().is_end);
    assert!(
        rest.iter().all(|p| !p.messages.is_empty() || p.is_end),
        "no empty page without is_end"
    );

    // Backward, likewise.
    let back = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            page_size: 20,
            ..request(Direction::Backward)
        },
    )
    .await
    .unwrap();
    let older = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            cursor: back[0].next_cursor.clone(),
            page_size: 50,
            ..request(Direction::Backward)
        },
    )
    .await
    .unwrap();
    assert_eq!(seqs(&older), (1..=25).rev().collect::<Vec<_>>());
    assert!(older[0].is_end);
}

#[tokio::test]
async fn a_forward_reader_follows_a_live_conversation_from_its_last_cursor() {
    let app = TestApp::spawn().await;
    conversation_of(&app, 3).await;
    let alice = app.user("alice").await;
    let pages = fetch_pages(&alice, request(Direction::Forward))
        .await
        .unwrap();
    assert!(pages[0].is_end);
    let cursor = pages[0].next_cursor.clone();
    let nothing_new = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            cursor: cursor.clone(),
            ..request(Direction::Forward)
        },
    )
    .await
    .unwrap();
    assert_eq!(nothing_new.len(), 1);
    assert!(nothing_new[0].messages.is_empty() && nothing_new[0].is_end);
    // The empty page's cursor resumes at the same place.
    let still = nothing_new[0].next_cursor.clone();
    app.peer("bob", "alice", "new 1").await;
    app.peer("alice", "bob", "new 2").await;
    for c in [cursor, still] {
        let since = fetch_pages(
            &alice,
            hpb::FetchHistoryRequest {
                cursor: c,
                ..request(Direction::Forward)
            },
        )
        .await
        .unwrap();
        assert_eq!(bodies(&since[0].messages), vec!["new 1", "new 2"]);
    }
}

#[tokio::test]
async fn a_conversation_that_never_started_is_one_empty_final_page() {
    let app = TestApp::spawn().await;
    let pages = fetch_pages(&app.user("alice").await, request(Direction::Backward))
        .await
        .unwrap();
    assert_eq!(pages.len(), 1);
    assert!(pages[0].messages.is_empty());
    assert!(pages[0].is_end);
}

#[tokio::test]
async fn cursors_are_bound_to_their_conversation_direction_and_filters() {
    let app = TestApp::spawn().await;
    conversation_of(&app, 30).await;
    app.peer("alice", "carol", "c").await;
    let alice = app.user("alice").await;
    let page = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            page_size: 5,
            ..request(Direction::Forward)
        },
    )
    .await
    .unwrap();
    let cursor = page[0].next_cursor.clone();
    let other_conversation = hpb::FetchHistoryRequest {
        conversation: Some(peer("carol")),
        cursor: cursor.clone(),
        ..request(Direction::Forward)
    };
    assert_status(
        fetch_pages(&alice, other_conversation).await,
        Code::InvalidArgument,
        "cursor",
    );
    let other_direction = hpb::FetchHistoryRequest {
        cursor: cursor.clone(),
        ..request(Direction::Backward)
    };
    assert_status(
        fetch_pages(&alice, other_direction).await,
        Code::InvalidArgument,
        "cursor",
    );
    let other_filter = hpb::FetchHistoryRequest {
        cursor: cursor.clone(),
        senders: vec!["bob".into()],
        ..request(Direction::Forward)
    };
    assert_status(
        fetch_pages(&alice, other_filter).await,
        Code::InvalidArgument,
        "cursor",
    );
    let both = hpb::FetchHistoryRequest {
        cursor: cursor.clone(),
        start_msg_id: "5".into(),
        ..request(Direction::Forward)
    };
    assert_status(
        fetch_pages(&alice, both).await,
        Code::InvalidArgument,
        "cursor",
    );
    // Malformed or altered.
    let mut altered = cursor.clone().into_bytes();
    let i = altered.len() / 2;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(altered).unwrap(),
        "garbage".into(),
        "%%%".into(),
        cursor[..cursor.len() - 2].to_owned(),
    ] {
        let r = fetch_pages(
            &alice,
            hpb::FetchHistoryRequest {
                cursor: bad,
                ..request(Direction::Forward)
            },
        )
        .await;
        assert_status(r, Code::InvalidArgument, "cursor");
    }
    // The other participant may resume it: it is the same conversation.
    let bob = app.user("bob").await;
    let resumed = fetch_pages(
        &bob,
        hpb::FetchHistoryRequest {
            conversation: Some(peer("alice")),
            cursor,
            ..request(Direction::Forward)
        },
    )
    .await
    .unwrap();
    assert_eq!(resumed[0].messages[0].seq, 6);
}

#[tokio::test]
async fn filters_select_by_sender_type_and_inclusive_time_range() {
    let app = TestApp::spawn().await;
    let msgs = conversation_of(&app, 10).await; // even from alice, odd from bob, 1 s apart
    let mut image = new_message(ConversationType::Peer, "alice", "bob", "img", "img-1");
    image.r#type = MessageType::Image as i32;
    app.service()
        .await
        .history()
        .append_messages(hpb::AppendMessagesRequest {
            messages: vec![image],
        })
        .await
        .unwrap();
    let alice = app.user("alice").await;
    let from_bob = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            senders: vec!["bob".into()],
            ..request(Direction::Forward)
        },
    )
    .await
    .unwrap();
    assert_eq!(bodies(&from_bob[0].messages), vec!["1", "3", "5", "7", "9"]);
    let images = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            types: vec![MessageType::Image as i32],
            ..request(Direction::Forward)
        },
    )
    .await
    .unwrap();
    assert_eq!(bodies(&images[0].messages), vec!["img"]);
    let window = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            start_time_ms: Some(msgs[2].server_time_ms),
            end_time_ms: Some(msgs[5].server_time_ms),
            ..request(Direction::Backward)
        },
    )
    .await
    .unwrap();
    assert_eq!(bodies(&window[0].messages), vec!["5", "4", "3", "2"]);
    assert!(window[0].is_end);
    // Filtered paging resumes with the same filters.
    let paged = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            senders: vec!["alice".into()],
            page_size: 2,
            max_pages: 2,
            ..request(Direction::Forward)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        bodies(
            &paged
                .iter()
                .flat_map(|p| p.messages.clone())
                .collect::<Vec<_>>()
        ),
        vec!["0", "2", "4", "6"]
    );
    let next = fetch_pages(
        &alice,
        hpb::FetchHistoryRequest {
            senders: vec!["alice".into()],
            cursor: paged[1].next_cursor.clone(),
            page_size: 50,
            ..request(Direction::Forward)
        },
    )
    .await
    .unwrap();
    assert_eq!(bodies(&next[0].messages), vec!["8", "img"]);
}

#[tokio::test]
async fn invalid_filters_are_rejected_naming_the_field() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice").await;
    let cases = vec![
        (
            "senders",
            hpb::FetchHistoryRequest {
                senders: (0..21).map(|i| format!("u{i}")).collect(),
                ..request(Direction::Forward)
            },
        ),
        (
            "senders[0]",
            hpb::FetchHistoryRequest {
                senders: vec!["bad id".into()],
                ..request(Direction::Forward)
            },
        ),
        (
            "types[1]",
            hpb::FetchHistoryRequest {
                types: vec![1, 0],
                ..request(Direction::Forward)
            },
        ),
        (
            "types[0]",
            hpb::FetchHistoryRequest {
                types: vec![77],
                ..request(Direction::Forward)
            },
        ),
        (
            "start_time_ms",
            hpb::FetchHistoryRequest {
                start_time_ms: Some(10),
                end_time_ms: Some(5),
                ..request(Direction::Forward)
            },
        ),
        (
            "end_time_ms",
            hpb::FetchHistoryRequest {
                end_time_ms: Some(-1),
                ..request(Direction::Forward)
            },
        ),
        (
            "conversation",
            hpb::FetchHistoryRequest {
                conversation: None,
                ..request(Direction::Forward)
            },
        ),
        (
            "conversation.type",
            hpb::FetchHistoryRequest {
                conversation: Some(conv(ConversationType::Unspecified, "bob")),
                ..request(Direction::Forward)
            },
        ),
        (
            "conversation.id",
            hpb::FetchHistoryRequest {
                conversation: Some(peer("")),
                ..request(Direction::Forward)
            },
        ),
        (
            "conversation.id",
            hpb::FetchHistoryRequest {
                conversation: Some(peer("b:b")),
                ..request(Direction::Forward)
            },
        ),
    ];
    for (field, req) in cases {
        assert_status(fetch_pages(&alice, req).await, Code::InvalidArgument, field);
    }
}

#[tokio::test]
async fn group_history_is_for_members_only() {
    let app = TestApp::spawn().await;
    app.add_members(ConversationType::Group, "team", &["alice", "bob"])
        .await;
    app.send(ConversationType::Group, "alice", "team", "secret plans")
        .await;
    let group = conv(ConversationType::Group, "team");
    let outsider = fetch_pages(
        &app.user("mallory").await,
        hpb::FetchHistoryRequest {
            conversation: Some(group.clone()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(outsider.unwrap_err().code(), Code::PermissionDenied);
    let nowhere = fetch_pages(
        &app.user("alice").await,
        hpb::FetchHistoryRequest {
            conversation: Some(conv(ConversationType::Chatroom, "team")),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        nowhere.unwrap_err().code(),
        Code::PermissionDenied,
        "a chatroom of the same id is another conversation"
    );
    assert_eq!(
        bodies(&app.fetch_all("bob", group, Direction::Backward).await),
        vec!["secret plans"]
    );
}
