//! `Client::sync`: the change feed applied to the local store, page by page, each page and
//! its token in one SQLite transaction.

use crate::connect::Client;
use crate::error::Error;
use crate::history::MAX_PAGE_SIZE;
use crate::local::{LocalStore, SyncPageUpdate, SyncPlan, SyncedChange};
use crate::types::{ConversationChange, Direction, Message};
use futures::StreamExt;
use futures::future::BoxFuture;
use roaming_proto::conversation::v1 as cpb;
use std::future::IntoFuture;
use std::time::Instant;

/// A sync being set up: chain options, then `.await` it. Made by [`Client::sync`].
#[derive(Debug, Clone)]
#[must_use = "a sync does nothing until awaited"]
pub struct SyncRequest {
    client: Client,
    page_size: u32,
}

/// What one [`Client::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// It started from a snapshot (the store held no token, or its token was past the
    /// server's retention): the mirror was replaced, not updated.
    pub snapshot: bool,
    /// The stored token was past the server's retention (`FAILED_PRECONDITION`), so the
    /// mirror was rebuilt from a snapshot.
    pub rebuilt: bool,
    /// Pages applied (each with its token, in one transaction).
    pub pages: usize,
    /// Changes received (a change may be repeated by the feed).
    pub changes: usize,
    /// List entries that appeared or changed.
    pub conversations_updated: usize,
    /// Conversations dropped from the store.
    pub conversations_removed: usize,
    /// Messages saved that were not stored before.
    pub messages_received: usize,
    /// Messages deleted locally because the server hides them now.
    pub messages_removed: usize,
}

impl SyncRequest {
    /// Changes per page: 1-100 (0, the default, means the server's 50). Each page is
    /// applied and its token stored in one transaction.
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = size;
        self
    }

    /// Runs the sync (the same as `.await`ing the request).
    pub async fn run(self) -> Result<SyncReport, Error> {
        let client = self.client;
        let store = client.local.clone().ok_or(Error::NoLocalStore)?;
        let _exclusive = store.exclusive.clone().lock_owned().await;
        let me = client.user_id();
        let (owner, mut token) = store.call(|s| s.sync_state()).await?;
        if let (Some(owner), Some(me)) = (&owner, &me) {
            if owner != me {
                return Err(foreign(owner, me));
            }
        }
        let user = me.or(owner);
        let mut report = SyncReport {
            snapshot: token.is_none(),
            ..SyncReport::default()
        };
        let mut attempt = 1;
        let mut started: Option<Instant> = None;
        loop {
            let request = cpb::SyncConversationsRequest {
                sync_token: token.clone().unwrap_or_default(),
                page_size: self.page_size,
            };
            let failure = match client.conversations().sync_conversations(request).await {
                Err(status) => Error::from(status),
                Ok(response) => {
                    let mut pages = response.into_inner();
                    loop {
                        match pages.message().await {
                            Ok(Some(page)) => {
                                attempt = 1;
                                started = None;
                                let is_end = page.is_end;
                                let next = page.next_sync_token.clone();
                                // A page without a stored token is a snapshot's first: it
                                // replaces the mirror.
                                let reset = token.is_none().then_some(report.rebuilt);
                                apply_page(&client, &store, page, reset, &user, &mut report)
                                    .await?;
                                token = Some(next);
                                if is_end {
                                    return Ok(report);
                                }
                            }
                            Ok(None) => {
                                break Error::InvalidResponse(
                                    "the sync stream ended before its last page".into(),
                                );
                            }
                            Err(status) => break Error::from(status),
                        }
                    }
                }
            };
            match failure {
                // Past the server's retention: start again from a snapshot, which replaces
                // the mirror when its first page is applied.
                Error::FailedPrecondition(_) if token.is_some() => {
                    token = None;
                    report.snapshot = true;
                    report.rebuilt = true;
                }
                Error::InvalidArgument(message) if message.contains("another user") => {
                    return Err(Error::ForeignLocalStore(format!(
                        "the server says its sync token was made for another user than this \
                         client's ({message}); give each user their own local store"
                    )));
                }
                e if e.is_retryable() => {
                    // Resume from the last applied page's token.
                    let since = *started.get_or_insert_with(Instant::now);
                    match client.retry.next_wait(attempt, since) {
                        Some(wait) => {
                            attempt += 1;
                            tokio::time::sleep(wait).await;
                        }
                        None => return Err(e),
                    }
                }
                e => return Err(e),
            }
        }
    }
}

impl IntoFuture for SyncRequest {
    type Output = Result<SyncReport, Error>;
    type IntoFuture = BoxFuture<'static, Result<SyncReport, Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

fn foreign(owner: &str, me: &str) -> Error {
    Error::ForeignLocalStore(format!(
        "this local store holds the sync token of user {owner}, and this client acts as {me}: \
         give each user their own local store"
    ))
}

/// Fetches what one page's changes need (network, no transaction open), then applies the
/// page and stores its token in one transaction.
async fn apply_page(
    client: &Client,
    store: &LocalStore,
    page: cpb::SyncConversationsResponse,
    reset: Option<bool>,
    user: &Option<String>,
    report: &mut SyncReport,
) -> Result<(), Error> {
    let mut changes = Vec::with_capacity(page.changes.len());
    for raw in page.changes {
        let change = ConversationChange::try_from(raw)?;
        // A snapshot's first page replaces the mirror: nothing stored is built on.
        let plan = if change.listed && reset.is_none() {
            let conversation = change.conversation.clone();
            store.call(move |s| s.sync_plan(&conversation)).await?
        } else {
            None
        };
        let synced = match plan {
            Some(plan) => complete(client, change, plan).await?,
            None => SyncedChange {
                change,
                fetched: Vec::new(),
                covers: Vec::new(),
            },
        };
        changes.push(synced);
    }
    report.changes += changes.len();
    let update = SyncPageUpdate {
        changes,
        token: page.next_sync_token,
        user: user.clone(),
        reset,
    };
    let applied = store.call(move |s| s.apply_sync_page(update)).await?;
    report.pages += 1;
    report.conversations_updated += applied.updated;
    report.conversations_removed += applied.removed_conversations;
    report.messages_received += applied.received;
    report.messages_removed += applied.removed_messages;
    Ok(())
}

/// For a listed conversation the store holds complete ranges of: fills the holes between
/// them and reads forward from the top to the change's `last_seq`, so that after the page is
/// applied its local copy is complete from its lowest complete seq up.
///
/// Every read here happens after the page was read, so it never returns a message the page
/// hides (hidden messages never come back); anchors may be messages the page hides (a
/// removed message still anchors), which the transaction then deletes.
async fn complete(
    client: &Client,
    change: ConversationChange,
    plan: SyncPlan,
) -> Result<SyncedChange, Error> {
    let conversation = &change.conversation;
    let mut fetched = Vec::new();
    let mut covers = Vec::new();
    for (lo, hi, lower, upper) in &plan.holes {
        if *hi <= change.hidden_through_seq {
            covers.push((*lo, *hi));
            continue;
        }
        let found = match client
            .fetch_hole(conversation, *lo, *hi, lower, upper, true)
            .await
        {
            Err(Error::NotFound(_)) => {
                client
                    .fetch_hole(conversation, *lo, *hi, lower, upper, false)
                    .await
            }
            other => other,
        };
        match found {
            Ok(found) => {
                fetched.extend(found);
                covers.push((lo - 1, hi + 1));
            }
            // Membership ended after the page was read: the next sync drops it.
            Err(Error::PermissionDenied(_)) => return Ok(unfetched(change)),
            Err(e) => return Err(e),
        }
    }
    if plan.top < change.last_seq {
        match read_forward(client, &change, plan.anchor.as_ref()).await {
            Ok((found, lo, hi)) => {
                fetched.extend(found);
                covers.push((lo, hi));
            }
            Err(Error::PermissionDenied(_)) => return Ok(unfetched(change)),
            Err(e) => return Err(e),
        }
    }
    Ok(SyncedChange {
        change,
        fetched,
        covers,
    })
}

fn unfetched(change: ConversationChange) -> SyncedChange {
    SyncedChange {
        change,
        fetched: Vec::new(),
        covers: Vec::new(),
    }
}

/// Reads forward from `anchor` (from the oldest message without one, or when the server no
/// longer knows it) to the end; returns the messages and the seq range the read proves
/// complete.
async fn read_forward(
    client: &Client,
    change: &ConversationChange,
    anchor: Option<&Message>,
) -> Result<(Vec<Message>, i64, i64), Error> {
    let mut anchors = vec![anchor];
    if anchor.is_some() {
        anchors.push(None);
    }
    let mut last_error = None;
    for anchor in anchors {
        let mut request = client
            .fetch_history(change.conversation.clone())
            .direction(Direction::Forward)
            .page_size(MAX_PAGE_SIZE)
            .save_locally(false);
        if let Some(m) = anchor {
            request = request.start_msg_id(m.msg_id.clone());
        }
        let mut pages = request.pages();
        let mut found = Vec::new();
        let mut failed = None;
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => {
                    let end = page.is_end;
                    found.extend(page.messages);
                    if end {
                        break;
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => {
                let lo = anchor.map_or(1, |m| m.seq);
                let hi = found
                    .last()
                    .map_or(change.last_seq, |m| m.seq.max(change.last_seq));
                return Ok((found, lo, hi));
            }
            Some(Error::NotFound(e)) => last_error = Some(Error::NotFound(e)),
            Some(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| Error::InvalidResponse("no forward read".into())))
}

impl Client {
    /// Brings the local store up to date with the server's change feed
    /// (`SyncConversations`), resuming from the token the store holds: `client.sync().await`.
    ///
    /// Each page of changes is applied in order, and its token is stored **in the same
    /// SQLite transaction** as what it applied, so a crash or an error between pages leaves
    /// the store at the last applied page's token with exactly that page's data, and the next
    /// sync resumes from there. Per change:
    ///
    /// - not `listed`: the conversation is dropped, with its messages;
    /// - listed: local messages at or below `hidden_through_seq`, and those in
    ///   `removed_msg_ids`, are deleted; the list entry takes the change's last message and
    ///   last activity; and when the store holds complete seq ranges of it (history fetched
    ///   or synced before), the holes between them are filled and it is read forward from
    ///   the newest complete seq to `last_seq`, so its local copy is complete from its
    ///   oldest complete seq up. Otherwise only the entry and its last message are kept (a
    ///   device does not download every conversation's history).
    ///
    /// Applying a change twice changes nothing (the feed may repeat changes). Network reads
    /// happen before a page's transaction opens; the transaction itself does no I/O. What
    /// changed is announced as [`StoreEvent`](crate::StoreEvent)s after each commit.
    ///
    /// **Snapshots replace the mirror.** A store without a token (its first sync) starts from
    /// a snapshot; so does one whose token is past the server's change retention (30 days
    /// by default: `FAILED_PRECONDITION`), which the sync handles by itself. The first
    /// snapshot page's transaction deletes every PEER and GROUP conversation, message and
    /// complete range of the store (chatrooms, which are not synced, stay), then applies the
    /// page: what was fetched before is not trusted, since a snapshot cannot say which of
    /// its messages were removed meanwhile. History is fetched again as it is read.
    ///
    /// A store holds one user's copy: syncing a store whose token belongs to another user
    /// than this client's ([`Client::user_id`]) fails with [`Error::ForeignLocalStore`]
    /// before any call. `UNAVAILABLE` is retried by the client's [`RetryPolicy`](crate::RetryPolicy),
    /// resuming from the last applied page. One sync or verify runs at a time per store.
    ///
    /// ```no_run
    /// # async fn demo(client: roaming_client::Client) -> Result<(), roaming_client::Error> {
    /// let report = client.sync().await?;
    /// println!("{} changes in {} pages", report.changes, report.pages);
    /// let smaller_pages = client.sync().page_size(10).await?;
    /// # Ok(()) }
    /// ```
    pub fn sync(&self) -> SyncRequest {
        SyncRequest {
            client: self.clone(),
            page_size: 0,
        }
    }
}
