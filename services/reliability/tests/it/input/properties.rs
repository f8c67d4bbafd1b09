//! The property runs: 10,000 generated requests per RPC through the services' own validation.

use super::append::{append_case, validate_append};
use super::conversations::{
    list_case, members_case, remove_conversation_case, validate_add_members, validate_list,
    validate_remove_conversation, validate_remove_members,
};
use super::fetch::{fetch_case, validate_fetch};
use super::history_changes::{
    digest_case, edit_case, recall_case, validate_digest, validate_edit, validate_recall,
};
use super::organise::{
    mark_conversation_case, mark_read_case, pin_case, sync_case, validate_mark_conversation,
    validate_mark_read, validate_pin, validate_sync,
};
use super::removals::{remove_before_case, remove_case, validate_remove, validate_remove_before};
use super::support::{Case, Expect};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Instant;
use tonic::{Code, Status};

fn cases() -> u32 {
    if std::env::var_os("ROAMING_RELIABILITY_LONG").is_some() {
        100_000
    } else {
        10_000
    }
}

/// Whether `message` names `field` (as `field: rule`, or `field[..]` for map entries).
fn names(message: &str, field: &str) -> bool {
    message.starts_with(&format!("{field}: ")) || message.starts_with(&format!("{field}[\""))
}

/// Checks one verdict against its expectation; returns the named field, if any.
fn judge(result: &Result<(), Status>, expect: &Expect) -> Result<Option<String>, String> {
    match (expect, result) {
        (Expect::Pass, Ok(())) => Ok(None),
        (Expect::Invalid(fields), Err(s)) if s.code() == Code::InvalidArgument => {
            match fields.iter().find(|f| names(s.message(), f)) {
                Some(f) => Ok(Some(f.clone())),
                None => Err(format!("{:?} names none of {fields:?}", s.message())),
            }
        }
        (Expect::Denied, Err(s)) if s.code() == Code::PermissionDenied => Ok(Some("(role)".into())),
        (e, r) => Err(format!("expected {e:?}, got {r:?}")),
    }
}

#[derive(Default, Debug)]
struct Figures {
    cases: u64,
    passed: u64,
    invalid: u64,
    denied: u64,
    fields: BTreeMap<String, u64>,
}

fn property<R: Clone + Debug + 'static>(
    rpc: &str,
    strategy: BoxedStrategy<Case<R>>,
    validate: fn(&Case<R>) -> Result<(), Status>,
) -> Figures {
    let started = Instant::now();
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: cases(),
            failure_persistence: None,
            max_shrink_iters: 2000,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let figures = std::cell::RefCell::new(Figures::default());
    let outcome = runner.run(&strategy, |case| {
        let result = validate(&case);
        let named = judge(&result, &case.expect).map_err(TestCaseError::fail)?;
        let mut f = figures.borrow_mut();
        f.cases += 1;
        match &result {
            Ok(()) => f.passed += 1,
            Err(s) if s.code() == Code::PermissionDenied => f.denied += 1,
            Err(_) => f.invalid += 1,
        }
        if let Some(field) = named {
            // Index-free, so the figures stay short: messages[3].sender → messages[].sender.
            let generic: String = {
                let mut out = String::new();
                let mut skip = false;
                for ch in field.chars() {
                    match ch {
                        '[' => {
                            skip = true;
                            out.push('[');
                        }
                        ']' => {
                            skip = false;
                            out.push(']');
                        }
                        _ if skip => {}
                        c => out.push(c),
                    }
                }
                out
            };
            *f.fields.entry(generic).or_default() += 1;
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{rpc}: {e}");
    }
    let f = figures.into_inner();
    println!(
        "input[{rpc}]: {} cases in {:.1?}: {} valid, {} INVALID_ARGUMENT, {} PERMISSION_DENIED, \
         0 other codes, 0 panics; fields named: {:?}",
        f.cases,
        started.elapsed(),
        f.passed,
        f.invalid,
        f.denied,
        f.fields
    );
    f
}

#[test]
fn append_messages_validation_holds_for_generated_requests() {
    let f = property("AppendMessages", append_case(), validate_append);
    assert!(f.invalid > f.cases / 2, "mostly invalid requests");
}

#[test]
fn fetch_history_validation_holds_for_generated_requests() {
    let f = property("FetchHistory", fetch_case(), validate_fetch);
    assert!(f.invalid > f.cases / 2 && f.passed > 0);
}

#[test]
fn remove_messages_validation_holds_for_generated_requests() {
    let f = property("RemoveMessages", remove_case(), validate_remove);
    assert!(f.invalid > f.cases / 3 && f.passed > 0);
}

#[test]
fn remove_messages_before_validation_holds_for_generated_requests() {
    let f = property(
        "RemoveMessagesBefore",
        remove_before_case(),
        validate_remove_before,
    );
    assert!(f.invalid > f.cases / 3 && f.passed > 0);
}

#[test]
fn list_conversations_validation_holds_for_generated_requests() {
    let f = property("ListConversations", list_case(), validate_list);
    assert!(f.invalid > f.cases / 3 && f.passed > 0);
}

#[test]
fn remove_conversation_validation_holds_for_generated_requests() {
    let f = property(
        "RemoveConversation",
        remove_conversation_case(),
        validate_remove_conversation,
    );
    assert!(f.invalid > f.cases / 3 && f.passed > 0 && f.denied > 0);
}

#[test]
fn add_members_validation_holds_for_generated_requests() {
    let f = property("AddMembers", members_case(), validate_add_members);
    assert!(f.invalid > f.cases / 3 && f.passed > 0 && f.denied > 0);
}

#[test]
fn remove_members_validation_holds_for_generated_requests() {
    let f = property("RemoveMembers", members_case(), validate_remove_members);
    assert!(f.invalid > f.cases / 3 && f.passed > 0 && f.denied > 0);
}

#[test]
fn mark_read_validation_holds_for_generated_requests() {
    let f = property("MarkRead", mark_read_case(), validate_mark_read);
    assert!(f.invalid > f.cases / 3 && f.passed > 0);
}

#[test]
fn pin_conversation_validation_holds_for_generated_requests() {
    let f = property("PinConversation", pin_case(), validate_pin);
    assert!(f.invalid > f.cases / 3 && f.passed > 0);
}

#[test]
fn mark_conversation_validation_holds_for_generated_requests() {
    let f = property(
        "MarkConversation",
        mark_conversation_case(),
        validate_mark_conversation,
    );
    assert!(f.invalid > f.cases / 3 && f.passed > 0);
}

#[test]
fn sync_conversations_validation_holds_for_generated_requests() {
    let f = property("SyncConversations", sync_case(), validate_sync);
    assert!(f.invalid > f.cases / 3 && f.passed > 0);
}

#[test]
fn recall_message_validation_holds_for_generated_requests() {
    let f = property("RecallMessage", recall_case(), validate_recall);
    assert!(f.invalid > f.cases / 3 && f.passed > 0 && f.denied > 0);
}

#[test]
fn edit_message_validation_holds_for_generated_requests() {
    let f = property("EditMessage", edit_case(), validate_edit);
    assert!(f.invalid > f.cases / 3 && f.passed > 0 && f.denied > 0);
}

#[test]
fn digest_history_validation_holds_for_generated_requests() {
    let f = property("DigestHistory", digest_case(), validate_digest);
    assert!(f.invalid > f.cases / 3 && f.passed > 0);
}
