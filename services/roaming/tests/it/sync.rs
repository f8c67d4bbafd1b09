//! SyncConversations: snapshots, deltas, paging, tokens; DigestHistory's buckets.

use crate::helpers::*;
use roaming_client::proto::common::v1::ConversationType;
use roaming_client::proto::conversation::v1 as cpb;
use roaming_client::proto::history::v1 as hpb;
use sha2::{Digest as _, Sha256};
use tonic::Code;

/// Every page of one SyncConversations call.
async fn sync_call(
    client: &roaming_client::Client,
    token: &str,
    page_size: u32,
) -> Result<Vec<cpb::SyncConversationsResponse>, tonic::Status> {
    let mut stream = client
        .conversations()
        .sync_conversations(cpb::SyncConversationsRequest {
            sync_token: token.to_owned(),
            page_size,
        })
        .await?
        .into_inner();
    let mut pages = Vec::new();
    while let Some(page) = stream.message().await? {
        pages.push(page);
    }
    Ok(pages)
}

/// The changes of one whole call and the token for the next.
async fn sync(
    client: &roaming_client::Client,
    token: &str,
) -> (Vec<cpb::ConversationChange>, String) {
    let pages = sync_call(client, token, 0).await.expect("sync");
    let last = pages.last().expect("at least one page");
    assert!(last.is_end, "the last page is the end");
    assert!(
        pages[..pages.len() - 1].iter().all(|p| !p.is_end),
        "only the last page is the end"
    );
    let token = last.next_sync_token.clone();
    (pages.into_iter().flat_map(|p| p.changes).collect(), token)
}

fn ids(changes: &[cpb::ConversationChange]) -> Vec<String> {
    changes
        .iter()
        .map(|c| c.conversation.clone().unwrap().id)
        .collect()
}

#[tokio::test]
async fn a_snapshot_lists_every_conversation_whatever_its_age_most_recent_first() {
    let app = TestApp::spawn().await;
    app.peer("carol", "alice", "old").await;
    app.clock.advance(30 * DAY_MS);
    app.peer("alice", "bob", "newer").await;
    app.clock.advance(1000);
    app.add_members(ConversationType::Group, "team", &["alice", "dave"])
        .await;
    app.send(ConversationType::Group, "dave", "team", "newest")
        .await;
    // Chatrooms are not synced.
    app.add_members(ConversationType::Chatroom, "lobby", &["alice"])
        .await;
    app.send(ConversationType::Chatroom, "alice", "lobby", "hi")
        .await;

    let alice = app.user("alice").await;
    let (changes, _) = sync(&alice, "").await;
    assert_eq!(ids(&changes), ["team", "bob", "carol"]);
    for c in &changes {
        assert!(c.listed && c.is_member);
        assert!(c.removed_msg_ids.is_empty());
        assert_eq!(c.last_seq, 1);
        assert_eq!(c.hidden_through_seq, 0);
        assert_eq!(
            c.last_activity_ms,
            c.last_message.as_ref().unwrap().server_time_ms
        );
    }
    assert_eq!(bodies(&[changes[2].last_message.clone().unwrap()]), ["old"]);
}

#[tokio::test]
async fn a_delta_after_no_change_is_one_empty_final_page() {
    let app = TestApp::spawn().await;
    app.peer("alice", "bob", "hi").await;
    let alice = app.user("alice").await;
    let (_, token) = sync(&alice, "").await;
    let pages = sync_call(&alice, &token, 0).await.unwrap();
    assert_eq!(pages.len(), 1);
    assert!(pages[0].changes.is_empty() && pages[0].is_end);
    // Again from the empty delta's own token: still nothing.
    let pages = sync_call(&alice, &pages[0].next_sync_token, 0)
        .await
        .unwrap();
    assert!(pages[0].changes.is_empty() && pages[0].is_end);
}

#[tokio::test]
async fn a_delta_reports_new_messages_removals_and_watermarks_from_any_device() {
    let app = TestApp::spawn().await;
    let first = app.peer("alice", "bob", "one").await;
    app.peer("bob", "alice", "two").await;
    app.peer("carol", "alice", "c").await;
    let laptop = app.user("alice").await;
    let phone = app.user("alice").await;
    let (_, token) = sync(&laptop, "").await;

    // New message in one conversation only.
    app.peer("bob", "alice", "three").await;
    let (changes, token) = sync(&laptop, &token).await;
    assert_eq!(ids(&changes), ["bob"]);
    assert_eq!(changes[0].last_seq, 3);
    assert_eq!(
        bodies(&[changes[0].last_message.clone().unwrap()]),
        ["three"]
    );

    // The phone removes a message by id: the laptop learns its id.
    phone
        .history()
        .remove_messages(hpb::RemoveMessagesRequest {
            conversation: Some(peer("bob")),
            msg_ids: vec![first.msg_id.clone()],
        })
        .await
        .unwrap();
    let (changes, token) = sync(&laptop, &token).await;
    assert_eq!(ids(&changes), ["bob"]);
    assert_eq!(
        changes[0].removed_msg_ids,
        std::slice::from_ref(&first.msg_id)
    );
    assert!(changes[0].listed);
    // Bob's view is his own: nothing changed for him (his snapshot is empty of removals).
    let bob = app.user("bob").await;
    let (bob_changes, _) = sync(&bob, "").await;
    assert!(bob_changes[0].removed_msg_ids.is_empty());

    // A time watermark.
    let now = app.clock.now_ms();
    phone
        .history()
        .remove_messages_before(hpb::RemoveMessagesBeforeRequest {
            conversation: Some(peer("bob")),
            before_time_ms: now,
        })
        .await
        .unwrap();
    let (changes, token) = sync(&laptop, &token).await;
    assert_eq!(ids(&changes), ["bob"]);
    assert_eq!(changes[0].hidden_through_seq, 3);
    assert!(!changes[0].listed, "every message is hidden: off the list");
    assert!(changes[0].last_message.is_none());

    // A one-way conversation removal.
    phone
        .conversations()
        .remove_conversation(cpb::RemoveConversationRequest {
            conversation: Some(peer("carol")),
            ..Default::default()
        })
        .await
        .unwrap();
    let (changes, token) = sync(&laptop, &token).await;
    assert_eq!(ids(&changes), ["carol"]);
    assert!(!changes[0].listed);
    // A newer message brings it back.
    app.peer("carol", "alice", "back").await;
    let (changes, _) = sync(&laptop, &token).await;
    assert_eq!(ids(&changes), ["carol"]);
    assert!(changes[0].listed);
}

#[tokio::test]
async fn group_messages_purges_and_membership_reach_members_without_a_row_per_member() {
    let app = TestApp::spawn().await;
    let members: Vec<String> = (0..50).map(|i| format!("m{i:02}")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    app.add_members(ConversationType::Group, "big", &refs).await;
    app.send(ConversationType::Group, "m00", "big", "first")
        .await;
    let m01 = app.user("m01").await;
    let (changes, token) = sync(&m01, "").await;
    assert_eq!(ids(&changes), ["big"]);

    let sql = app.sql().await;
    let stamped = |sql: tokio_postgres::Client| async move {
        sql.query_one(
            "SELECT count(*) FROM user_conversations WHERE conv_key = 'g:big'
             AND change_xid > (SELECT change_xid FROM conversations WHERE conv_key = 'g:big')",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };
    app.send(ConversationType::Group, "m00", "big", "second")
        .await;
    assert_eq!(
        stamped(sql).await,
        0,
        "a group message writes no member row"
    );
    let (changes, token) = sync(&m01, &token).await;
    assert_eq!(ids(&changes), ["big"]);
    assert_eq!(changes[0].last_seq, 2);

    // A non-member sees nothing of it.
    let outsider = app.user("zed").await;
    let (changes, _) = sync(&outsider, "").await;
    assert!(changes.is_empty());

    // Purged with its messages: off the list, every seq hidden.
    app.service()
        .await
        .conversations()
        .remove_conversation(cpb::RemoveConversationRequest {
            conversation: Some(conv(ConversationType::Group, "big")),
            delete_messages: true,
            scope: cpb::RemovalScope::ForEveryone as i32,
        })
        .await
        .unwrap();
    let (changes, token) = sync(&m01, &token).await;
    assert_eq!(ids(&changes), ["big"]);
    assert!(!changes[0].listed);
    assert_eq!(changes[0].hidden_through_seq, 2);

    // Membership ended, then a new message: m01 hears that it left, and nothing after.
    app.send(ConversationType::Group, "m00", "big", "third")
        .await;
    app.service()
        .await
        .conversations()
        .remove_members(cpb::RemoveMembersRequest {
            conversation: Some(conv(ConversationType::Group, "big")),
            user_ids: vec!["m01".into()],
        })
        .await
        .unwrap();
    let (changes, token) = sync(&m01, &token).await;
    assert_eq!(ids(&changes), ["big"]);
    assert!(!changes[0].listed && !changes[0].is_member);
    app.send(ConversationType::Group, "m00", "big", "fourth")
        .await;
    let (changes, token) = sync(&m01, &token).await;
    assert!(changes.is_empty(), "{changes:?}");
    // Added back: it returns.
    app.add_members(ConversationType::Group, "big", &["m01"])
        .await;
    let (changes, _) = sync(&m01, &token).await;
    assert_eq!(ids(&changes), ["big"]);
    assert!(changes[0].listed && changes[0].is_member);
}

#[tokio::test]
async fn pages_carry_tokens_that_resume_right_after_them() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        app.peer(&format!("u{i}"), "alice", "hi").await;
        app.clock.advance(1000);
    }
    let alice = app.user("alice").await;
    let pages = sync_call(&alice, "", 2).await.unwrap();
    assert_eq!(
        pages.iter().map(|p| p.changes.len()).collect::<Vec<_>>(),
        [2, 2, 1]
    );
    assert_eq!(
        pages.iter().map(|p| p.is_end).collect::<Vec<_>>(),
        [false, false, true]
    );
    // Resuming from the first page's token returns exactly the rest.
    let rest = sync_call(&alice, &pages[0].next_sync_token, 2)
        .await
        .unwrap();
    let rest_ids: Vec<String> = rest.iter().flat_map(|p| ids(&p.changes)).collect();
    assert_eq!(rest_ids, ["u2", "u1", "u0"]);
    // The last page's token is the next delta: empty.
    let (changes, _) = sync(&alice, &rest.last().unwrap().next_sync_token).await;
    assert!(changes.is_empty());
    // A delta pages the same way.
    for i in 0..3 {
        app.peer(&format!("u{i}"), "alice", "again").await;
    }
    let pages = sync_call(&alice, &pages[2].next_sync_token, 2)
        .await
        .unwrap();
    let delta: Vec<String> = pages.iter().flat_map(|p| ids(&p.changes)).collect();
    assert_eq!(delta.len(), 3);
    assert_eq!(pages.len(), 2);
}

#[tokio::test]
async fn bad_foreign_and_expired_tokens_are_refused_with_their_codes() {
    let app = TestApp::spawn().await;
    app.peer("alice", "bob", "hi").await;
    let alice = app.user("alice").await;
    let (_, token) = sync(&alice, "").await;

    assert_status(
        sync_call(&alice, "not-a-token", 0).await,
        Code::InvalidArgument,
        "sync_token",
    );
    let mut altered = token.clone().into_bytes();
    altered[5] = if altered[5] == b'A' { b'B' } else { b'A' };
    assert_status(
        sync_call(&alice, std::str::from_utf8(&altered).unwrap(), 0).await,
        Code::InvalidArgument,
        "sync_token",
    );
    let bob = app.user("bob").await;
    assert_status(
        sync_call(&bob, &token, 0).await,
        Code::InvalidArgument,
        "another user",
    );
    assert_status(
        sync_call(&alice, "", 101).await,
        Code::InvalidArgument,
        "page_size",
    );
    assert!(sync_call(&alice, "", 100).await.is_ok());

    app.clock.advance(31 * DAY_MS);
    let expired = sync_call(&alice, &token, 0).await.unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition);
    assert!(
        expired.message().contains("without a token"),
        "{}",
        expired.message()
    );
    // A fresh snapshot works again.
    let (changes, _) = sync(&alice, "").await;
    assert_eq!(ids(&changes), ["bob"]);
}

/// The digest of `(seq, msg_id, edit_version)` triples as the contract defines it.
fn digest_of(messages: &[(i64, i64, u32)]) -> String {
    let mut hasher = Sha256::new();
    for (seq, id, version) in messages {
        hasher.update(seq.to_be_bytes());
        hasher.update(id.to_be_bytes());
        hasher.update(version.to_be_bytes());
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn digest_buckets_count_and_hash_what_the_caller_may_see() {
    let app = TestApp::spawn().await;
    let mut sent = Vec::new();
    for i in 0..7 {
        sent.push(app.peer("alice", "bob", &format!("m{i}")).await);
    }
    let alice = app.user("alice").await;
    alice
        .history()
        .remove_messages(hpb::RemoveMessagesRequest {
            conversation: Some(peer("bob")),
            msg_ids: vec![sent[3].msg_id.clone()],
        })
        .await
        .unwrap();
    let digest = |client: roaming_client::Client, request: hpb::DigestHistoryRequest| async move {
        client
            .history()
            .digest_history(request)
            .await
            .map(|r| r.into_inner().buckets)
    };
    let request = hpb::DigestHistoryRequest {
        conversation: Some(peer("bob")),
        bucket_size: 3,
        ..Default::default()
    };
    let buckets = digest(alice.clone(), request.clone()).await.unwrap();
    let triple = |i: usize| (sent[i].seq, sent[i].msg_id.parse::<i64>().unwrap(), 0u32);
    assert_eq!(
        buckets
            .iter()
            .map(|b| (b.from_seq, b.to_seq, b.count))
            .collect::<Vec<_>>(),
        [(1, 3, 3), (4, 6, 2), (7, 7, 1)]
    );
    assert_eq!(
        buckets[0].digest,
        digest_of(&[triple(0), triple(1), triple(2)])
    );
    assert_eq!(buckets[1].digest, digest_of(&[triple(4), triple(5)]));
    // Bob removed nothing: his middle bucket differs.
    let bob = app.user("bob").await;
    let bob_buckets = digest(
        bob.clone(),
        hpb::DigestHistoryRequest {
            conversation: Some(peer("alice")),
            ..request.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(bob_buckets[1].count, 3);
    assert_ne!(bob_buckets[1].digest, buckets[1].digest);
    assert_eq!(bob_buckets[0], buckets[0]);
    // Beyond the newest seq: empty buckets with the empty digest.
    let beyond = digest(
        alice.clone(),
        hpb::DigestHistoryRequest {
            from_seq: 8,
            to_seq: 12,
            bucket_size: 5,
            ..request.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(beyond.len(), 1);
    assert_eq!(beyond[0].count, 0);
    assert_eq!(beyond[0].digest, "e3b0c44298fc1c149afbf4c8996fb924");
    // Defaults: from 1, to the newest, 1000 a bucket.
    let whole = digest(
        alice.clone(),
        hpb::DigestHistoryRequest {
            conversation: Some(peer("bob")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(whole.len(), 1);
    assert_eq!(
        (whole[0].from_seq, whole[0].to_seq, whole[0].count),
        (1, 7, 6)
    );

    // Unhappy paths.
    for (bad, field) in [
        (
            hpb::DigestHistoryRequest {
                from_seq: 5,
                to_seq: 4,
                ..request.clone()
            },
            "from_seq",
        ),
        (
            hpb::DigestHistoryRequest {
                bucket_size: 100_001,
                ..request.clone()
            },
            "bucket_size",
        ),
        (
            hpb::DigestHistoryRequest {
                to_seq: 1001,
                bucket_size: 1,
                ..request.clone()
            },
            "to_seq",
        ),
        (
            hpb::DigestHistoryRequest {
                from_seq: -1,
                ..request.clone()
            },
            "from_seq",
        ),
        (
            hpb::DigestHistoryRequest {
                conversation: None,
                ..request.clone()
            },
            "conversation",
        ),
    ] {
        assert_status(
            digest(alice.clone(), bad).await,
            Code::InvalidArgument,
            field,
        );
    }
    app.add_members(ConversationType::Group, "g", &["bob"])
        .await;
    assert_status(
        digest(
            alice.clone(),
            hpb::DigestHistoryRequest {
                conversation: Some(conv(ConversationType::Group, "g")),
                ..Default::default()
            },
        )
        .await,
        Code::PermissionDenied,
        "member",
    );
}
