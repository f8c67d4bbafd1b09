//! 10,000 randomized cross-user requests that must never return a row of anyone else's view.

use super::support::Raw;
use super::world::{Hidden, Tally, USERS, World, conversation_ref_of, random_ref};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use roaming_proto::common::v1::{ConversationType, Message};
use roaming_proto::conversation::v1 as cpb;
use roaming_proto::history::v1 as hpb;
use roaming_testkit::{TestApp, new_message};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_cross_user_requests_return_no_row_of_anyone_elses_view() {
    let total: u64 = if std::env::var_os("ROAMING_RELIABILITY_LONG").is_some() {
        50_000
    } else {
        10_000
    };
    let app = TestApp::spawn().await;
    let started = Instant::now();
    let mut world = World::default();

    // Peer conversations between random pairs, two groups and a chatroom.
    let groups: [(&str, ConversationType, &[&str]); 3] = [
        ("team", ConversationType::Group, &["u0", "u1", "u2", "u3"]),
        ("ops", ConversationType::Group, &["u3", "u4", "u5"]),
        ("lobby", ConversationType::Chatroom, &["u0", "u5", "u6"]),
    ];
    for (id, kind, members) in groups {
        app.add_members(kind, id, members).await;
        let key = if kind == ConversationType::Group {
            format!("g:{id}")
        } else {
            format!("r:{id}")
        };
        world
            .members
            .insert(key, members.iter().map(|m| m.to_string()).collect());
    }
    let pairs = [
        ("u0", "u1"),
        ("u0", "u2"),
        ("u1", "u2"),
        ("u2", "u3"),
        ("u3", "u4"),
        ("u4", "u5"),
        ("u5", "u6"),
        ("u6", "u0"),
        ("u1", "u7"),
    ];
    let service = app.service().await;
    for round in 0..10 {
        let mut batch = Vec::new();
        for (a, b) in pairs {
            let (s, r) = if round % 2 == 0 { (a, b) } else { (b, a) };
            batch.push(new_message(
                ConversationType::Peer,
                s,
                r,
                &format!("{s}->{r} #{round}"),
                &format!("x-{round}-{s}-{r}"),
            ));
        }
        for (id, kind, members) in groups {
            let s = members[round % members.len()];
            batch.push(new_message(
                kind,
                s,
                id,
                &format!("{s}@{id} #{round}"),
                &format!("x-{round}-{s}-{id}"),
            ));
        }
        let results = service
            .history()
            .append_messages(hpb::AppendMessagesRequest { messages: batch })
            .await
            .unwrap()
            .into_inner()
            .results;
        for r in results {
            let m = r.message.unwrap();
            let c = m.conversation.clone().unwrap();
            let k = world.key_of(&m.sender, &c).unwrap();
            world.conv_of.insert(m.msg_id.clone(), k.clone());
            world.messages.entry(k).or_default().push(m);
        }
        app.clock.advance(1000);
    }
    let all_ids: Vec<String> = world.conv_of.keys().cloned().collect();
    let world = Arc::new(world);
    let hidden = Arc::new(Mutex::new(Hidden::default()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    // Cursors handed out to anyone, reused by others.
    let cursors: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let raw = Raw::connect(&app.endpoint).await;
    let service_token = app.token("gateway", true);
    let user_tokens: HashMap<String, String> = USERS
        .iter()
        .map(|u| (u.to_string(), app.token(u, false)))
        .collect();
    let user_tokens = Arc::new(user_tokens);
    let all_ids = Arc::new(all_ids);

    const TASKS: u64 = 8;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (world, hidden, tally, cursors, raw) = (
            world.clone(),
            hidden.clone(),
            tally.clone(),
            cursors.clone(),
            raw.clone(),
        );
        let (service_token, user_tokens, all_ids) =
            (service_token.clone(), user_tokens.clone(), all_ids.clone());
        let base_time = 1_800_000_000_000i64;
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(1000 + t);
            for _ in 0..total / TASKS {
                let caller = USERS[rng.random_range(0..USERS.len())];
                // Who calls: the user, the gateway acting for them, the user pretending to
                // be someone else, the gateway naming nobody.
                let roll = rng.random_range(0..100);
                let (token, act_as, effective): (&str, Option<&str>, Option<&str>) = match roll {
                    0..70 => (&user_tokens[caller], None, Some(caller)),
                    70..85 => (&service_token, Some(caller), Some(caller)),
                    85..95 => {
                        let other = USERS[rng.random_range(0..USERS.len())];
                        let effective = (other == caller).then_some(caller);
                        (&user_tokens[caller], Some(other), effective)
                    }
                    _ => (&service_token, None, None),
                };
                let target = random_ref(&mut rng);
                let snapshot: HashSet<String> = effective
                    .and_then(|e| hidden.lock().unwrap().by_user.get(e).cloned())
                    .unwrap_or_default();
                let op = rng.random_range(0..100);
                let kind: &'static str;
                let result: Result<Vec<Message>, tonic::Status>;
                let mut removed_now: Vec<String> = Vec::new();
                let mut list_entries: Vec<cpb::Conversation> = Vec::new();
                let mut removal_statuses: Vec<hpb::RemovalResult> = Vec::new();
                let mut target_key = None;
                match op {
                    0..55 => {
                        kind = "FetchHistory";
                        let mut req = hpb::FetchHistoryRequest {
                            conversation: Some(target.clone()),
                            direction: rng.random_range(0..3),
                            page_size: rng.random_range(0..8),
                            max_pages: rng.random_range(0..4),
                            ..Default::default()
                        };
                        match rng.random_range(0..10) {
                            0..2 => {
                                req.start_msg_id =
                                    all_ids[rng.random_range(0..all_ids.len())].clone();
                            }
                            2..4 => {
                                let c = cursors.lock().unwrap();
                                if !c.is_empty() {
                                    req.cursor = c[rng.random_range(0..c.len())].clone();
                                }
                            }
                            _ => {}
                        }
                        let mut client = raw.history(Some(token), act_as);
                        result = match client.fetch_history(req).await {
                            Ok(resp) => {
                                let mut stream = resp.into_inner();
                                let mut out = Vec::new();
                                let mut err = None;
                                loop {
                                    match stream.message().await {
                                        Ok(Some(page)) => {
                                            if !page.next_cursor.is_empty() {
                                                let mut c = cursors.lock().unwrap();
                                                if c.len() < 500 {
                                                    c.push(page.next_cursor.clone());
                                                } else {
                                                    let i = rng.random_range(0..c.len());
                                                    c[i] = page.next_cursor.clone();
                                                }
                                            }
                                            out.extend(page.messages);
                                        }
                                        Ok(None) => break,
                                        Err(e) => {
                                            err = Some(e);
                                            break;
                                        }
                                    }
                                }
                                match err {
                                    Some(e) => Err(e),
                                    None => Ok(out),
                                }
                            }
                            Err(e) => Err(e),
                        };
                    }
                    55..80 => {
                        kind = "ListConversations";
                        let mut types = Vec::new();
                        for _ in 0..rng.random_range(0..3) {
                            types.push(rng.random_range(1..4));
                        }
                        let req = cpb::ListConversationsRequest {
                            page_size: rng.random_range(0..20),
                            types,
                            ..Default::default()
                        };
                        result = raw
                            .conversations(Some(token), act_as)
                            .list_conversations(req)
                            .await
                            .map(|r| {
                                list_entries = r.into_inner().conversations;
                                list_entries
                                    .iter()
                                    .filter_map(|e| e.last_message.clone())
                                    .collect()
                            });
                    }
                    80..92 => {
                        kind = "RemoveMessages";
                        let ids: Vec<String> = (0..rng.random_range(1..4))
                            .map(|_| all_ids[rng.random_range(0..all_ids.len())].clone())
                            .collect();
                        target_key = effective.and_then(|e| world.key_of(e, &target));
                        result = raw
                            .history(Some(token), act_as)
                            .remove_messages(hpb::RemoveMessagesRequest {
                                conversation: Some(target.clone()),
                                msg_ids: ids.clone(),
                            })
                            .await
                            .map(|r| {
                                removal_statuses = r.into_inner().results;
                                Vec::new()
                            });
                        if result.is_ok() {
                            for id in ids {
                                if world.conv_of.get(&id) == target_key.as_ref() {
                                    removed_now.push(id);
                                }
                            }
                        }
                    }
                    92..95 => {
                        kind = "RemoveMessagesBefore";
                        // Hides the first few rounds (1 s apart) of the conversation.
                        let before = base_time + 1000 * rng.random_range(0..3);
                        target_key = effective.and_then(|e| world.key_of(e, &target));
                        result = raw
                            .history(Some(token), act_as)
                            .remove_messages_before(hpb::RemoveMessagesBeforeRequest {
                                conversation: Some(target.clone()),
                                before_time_ms: before,
                            })
                            .await
                            .map(|_| Vec::new());
                        if result.is_ok() {
                            if let Some(k) = &target_key {
                                for m in world.messages.get(k).into_iter().flatten() {
                                    if m.server_time_ms <= before {
                                        removed_now.push(m.msg_id.clone());
                                    }
                                }
                            }
                        }
                    }
                    _ => {
                        kind = "RemoveConversation";
                        let delete = rng.random_bool(0.2);
                        target_key = effective.and_then(|e| world.key_of(e, &target));
                        result = raw
                            .conversations(Some(token), act_as)
                            .remove_conversation(cpb::RemoveConversationRequest {
                                conversation: Some(target.clone()),
                                delete_messages: delete,
                                scope: 0,
                            })
                            .await
                            .map(|_| Vec::new());
                        if result.is_ok() && delete {
                            if let Some(k) = &target_key {
                                for m in world.messages.get(k).into_iter().flatten() {
                                    removed_now.push(m.msg_id.clone());
                                }
                            }
                        }
                    }
                }

                // Check what came back.
                let mut violations = Vec::new();
                let mut checked = 0u64;
                match (&result, effective) {
                    (Ok(messages), Some(e)) => {
                        for m in messages {
                            checked += 1;
                            let Some(k) = world.conv_of.get(&m.msg_id) else {
                                violations.push(format!("{kind}: unknown message {}", m.msg_id));
                                continue;
                            };
                            if !world.takes_part(e, k) {
                                violations
                                    .push(format!("{kind} as {e} returned {} of {k}", m.msg_id));
                            }
                            let seen_as = m.conversation.as_ref().and_then(|c| world.key_of(e, c));
                            if seen_as.as_deref() != Some(k.as_str()) {
                                violations.push(format!(
                                    "{kind} as {e}: {} labelled {:?}, not {e}'s view of {k}",
                                    m.msg_id, m.conversation
                                ));
                            }
                            if snapshot.contains(&m.msg_id) {
                                violations.push(format!(
                                    "{kind} as {e} returned {} which {e} had removed",
                                    m.msg_id
                                ));
                            }
                        }
                        for entry in &list_entries {
                            let k = entry.conversation.as_ref().and_then(|c| world.key_of(e, c));
                            match k {
                                Some(k) if world.takes_part(e, &k) => {}
                                other => violations
                                    .push(format!("ListConversations as {e} listed {other:?}")),
                            }
                        }
                        if kind == "RemoveMessages" {
                            for r in &removal_statuses {
                                let own = world.conv_of.get(&r.msg_id) == target_key.as_ref();
                                if !own && r.status != hpb::RemovalStatus::NotFound as i32 {
                                    violations.push(format!(
                                        "RemoveMessages as {e}: foreign id {} got status {}",
                                        r.msg_id, r.status
                                    ));
                                }
                            }
                        }
                        if let Some(k) = &target_key {
                            if !world.takes_part(e, k)
                                && kind != "FetchHistory"
                                && k.starts_with(['g', 'r'])
                            {
                                violations.push(format!("{kind} as {e} succeeded on {k}"));
                            }
                        }
                    }
                    (Ok(_), None) => {
                        violations.push(format!(
                            "{kind} succeeded for a caller acting for nobody ({roll})"
                        ));
                    }
                    (Err(s), _) => {
                        let fine = matches!(
                            s.code(),
                            Code::PermissionDenied | Code::NotFound | Code::InvalidArgument
                        );
                        if !fine {
                            violations.push(format!("{kind}: unexpected {s:?}"));
                        }
                        if effective.is_none()
                            && !matches!(s.code(), Code::PermissionDenied | Code::InvalidArgument)
                        {
                            violations.push(format!("{kind} without a user: {s:?}"));
                        }
                    }
                }
                if let (Some(e), false) = (effective, removed_now.is_empty()) {
                    hidden
                        .lock()
                        .unwrap()
                        .by_user
                        .entry(e.to_owned())
                        .or_default()
                        .extend(removed_now);
                }
                let mut tl = tally.lock().unwrap();
                tl.requests += 1;
                *tl.by_kind.entry(kind).or_default() += 1;
                let code = match &result {
                    Ok(_) => "OK".to_owned(),
                    Err(s) => format!("{:?}", s.code()),
                };
                *tl.by_code.entry(code).or_default() += 1;
                tl.messages_checked += checked;
                tl.entries_checked += list_entries.len() as u64;
                tl.violations.extend(violations);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    // The final views are exact: every user sees every message of their conversations but
    // the ones they removed, and nobody else's removals changed anything for them.
    let hidden = hidden.lock().unwrap().by_user.clone();
    let mut final_checked = 0;
    let mut tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    for user in USERS {
        let client = app.user(user).await;
        for (k, messages) in &world.messages {
            if !world.takes_part(user, k) {
                continue;
            }
            let reference = conversation_ref_of(user, k);
            let pages = roaming_testkit::fetch_pages(
                &client,
                hpb::FetchHistoryRequest {
                    conversation: Some(reference),
                    direction: hpb::Direction::Forward as i32,
                    page_size: 50,
                    max_pages: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            let got: Vec<String> = pages
                .into_iter()
                .flat_map(|p| p.messages)
                .map(|m| m.msg_id)
                .collect();
            let empty = HashSet::new();
            let mine = hidden.get(user).unwrap_or(&empty);
            let expected: Vec<String> = messages
                .iter()
                .map(|m| m.msg_id.clone())
                .filter(|id| !mine.contains(id))
                .collect();
            final_checked += got.len();
            if got != expected {
                tally.violations.push(format!(
                    "final view of {user} on {k}: got {got:?}, expected {expected:?}"
                ));
            }
        }
    }
    // Tombstones exist only for users of the conversation.
    let sql = app.sql().await;
    let strays: i64 = sql
        .query_one(
            "SELECT count(*) FROM tombstones t WHERE NOT EXISTS (SELECT 1 FROM user_conversations u \
             WHERE u.conv_key = t.conv_key AND u.user_id = t.user_id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    if strays != 0 {
        tally
            .violations
            .push(format!("{strays} tombstones of non-participants"));
    }
    let removals: usize = hidden.values().map(HashSet::len).sum();
    println!(
        "security: {} randomized cross-user requests in {:.1?} (8 users, 9 peer conversations, \
         2 groups, 1 chatroom; 70% own token, 15% service acting for the user, 10% user token \
         naming another user, 5% service naming nobody)",
        tally.requests,
        started.elapsed()
    );
    println!("security:   by kind {:?}", tally.by_kind);
    println!("security:   by code {:?}", tally.by_code);
    println!(
        "security:   {} returned messages and {} list entries checked, {} (user, message) \
         one-way removals, final views exact for every user ({final_checked} messages), \
         tombstones of non-participants {strays}, violations {}",
        tally.messages_checked,
        tally.entries_checked,
        removals,
        tally.violations.len()
    );
    assert!(
        tally.violations.is_empty(),
        "{} violations, first: {:#?}",
        tally.violations.len(),
        &tally.violations[..tally.violations.len().min(10)]
    );
}
