//! The per-user quota: calls in progress per identity, so that one token cannot take the
//! server's every admission slot (the concurrency limit is shared by everyone).
//!
//! An identity is the user a call acts for (a user token's `sub`, or the `x-roaming-user` a
//! service token names), or, for a service token acting for nobody, the service's `sub`.
//!
//! Where the permit is taken, and why there. The guard runs around the router, before
//! authentication: the token is verified by the auth interceptor inside each service (after
//! routing, so that unknown paths still answer UNIMPLEMENTED and health and reflection need no
//! token). So the guard cannot know who calls when it admits a call, and the interceptor,
//! which knows, cannot know when the call is over: the handler returns long before a stream's
//! last page, or even a unary answer, has left (a reader with a zero flow-control window
//! takes nothing at all). Verifying the token a second time in the guard would double the
//! JWT cost of every call and duplicate the per-service auth wiring. Instead the guard hands
//! every call a [`QuotaSlot`] (in the request's extensions); the interceptor, the first code
//! that knows the identity, takes the identity's permit into it, or refuses the call at once;
//! and the guard's observation of the call empties it when the call is over: when its
//! trailers pass, when the client goes away, or when the guard ends the call (deadline, stall).

use crate::auth::Caller;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tonic::Status;

/// Whose calls count together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Identity {
    /// The user a call acts for.
    User(String),
    /// A service token acting for nobody: its `sub`.
    Service(String),
}

impl Identity {
    fn of(caller: &Caller) -> Self {
        match &caller.act_as {
            Some(user) => Identity::User(user.as_str().to_owned()),
            None => Identity::Service(caller.subject.clone()),
        }
    }
}

/// Calls in progress per identity. An identity's entry exists only while it has calls in
/// progress, so the map holds at most as many entries as there are calls.
#[derive(Debug)]
pub(crate) struct Quota {
    limit: usize,
    in_progress: Mutex<HashMap<Identity, usize>>,
}

impl Quota {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            in_progress: Mutex::new(HashMap::new()),
        })
    }

    fn try_acquire(self: &Arc<Self>, identity: Identity) -> Option<QuotaPermit> {
        let mut counts = self
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = counts.get(&identity).copied().unwrap_or(0);
        if count >= self.limit {
            return None;
        }
        counts.insert(identity.clone(), count + 1);
        Some(QuotaPermit {
            quota: self.clone(),
            identity,
        })
    }
}

/// One call's place in its identity's quota; given back on drop.
#[derive(Debug)]
struct QuotaPermit {
    quota: Arc<Quota>,
    identity: Identity,
}

impl Drop for QuotaPermit {
    fn drop(&mut self) {
        let mut counts = self
            .quota
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.identity) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.identity);
            }
        }
    }
}

/// A call's place for its identity's permit: made by the guard for every call it admits and
/// put in the request's extensions, filled by the auth interceptor ([`QuotaSlot::acquire`]),
/// emptied by the guard when the call is over.
#[derive(Debug, Clone)]
pub struct QuotaSlot(Arc<SlotInner>);

#[derive(Debug)]
struct SlotInner {
    quota: Arc<Quota>,
    permit: Mutex<Option<QuotaPermit>>,
    refused: AtomicBool,
}

impl QuotaSlot {
    pub(crate) fn new(quota: Arc<Quota>) -> Self {
        Self(Arc::new(SlotInner {
            quota,
            permit: Mutex::new(None),
            refused: AtomicBool::new(false),
        }))
    }

    /// Takes a place in `caller`'s quota for this call, or refuses the call with
    /// RESOURCE_EXHAUSTED when the caller already has as many calls in progress as allowed.
    pub fn acquire(&self, caller: &Caller) -> Result<(), Status> {
        let identity = Identity::of(caller);
        let who = match identity {
            Identity::User(_) => "this user",
            Identity::Service(_) => "this service",
        };
        match self.0.quota.try_acquire(identity) {
            Some(permit) => {
                *self.0.permit.lock().unwrap_or_else(PoisonError::into_inner) = Some(permit);
                Ok(())
            }
            None => {
                self.0.refused.store(true, Ordering::Relaxed);
                tracing::info!("call refused at the per-user quota");
                Err(Status::resource_exhausted(format!(
                    "{who} has {} calls in progress, the most allowed; retry with backoff",
                    self.0.quota.limit
                )))
            }
        }
    }

    /// Gives the call's place back (the call is over).
    pub(crate) fn release(&self) {
        let permit = self
            .0
            .permit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(permit);
    }

    /// Whether the quota refused this call.
    pub(crate) fn refused(&self) -> bool {
        self.0.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roaming_domain::UserId;

    fn user(name: &str) -> Caller {
        Caller {
            subject: name.to_owned(),
            is_service: false,
            act_as: Some(UserId::parse("sub", name).unwrap()),
        }
    }

    fn service(sub: &str, act_as: Option<&str>) -> Caller {
        Caller {
            subject: sub.to_owned(),
            is_service: true,
            act_as: act_as.map(|u| UserId::parse("x-roaming-user", u).unwrap()),
        }
    }

    #[test]
    fn an_identity_past_its_quota_is_refused_and_others_are_not() {
        let quota = Quota::new(2);
        let slots: Vec<_> = (0..3).map(|_| QuotaSlot::new(quota.clone())).collect();
        assert!(slots[0].acquire(&user("alice")).is_ok());
        // A service acting for alice counts as alice.
        assert!(slots[1].acquire(&service("gateway", Some("alice"))).is_ok());
        let refused = slots[2].acquire(&user("alice")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(slots[2].refused());
        // Others are unaffected, and a service acting for nobody counts as the service (not
        // as a user of the same name).
        assert!(QuotaSlot::new(quota.clone()).acquire(&user("bob")).is_ok());
        let gateway = [QuotaSlot::new(quota.clone()), QuotaSlot::new(quota.clone())];
        assert!(gateway[0].acquire(&service("alice", None)).is_ok());
        assert!(gateway[1].acquire(&service("alice", None)).is_ok());
        assert!(
            QuotaSlot::new(quota.clone())
                .acquire(&service("alice", None))
                .is_err()
        );
        // A call that is over gives its place back; entries go once empty.
        slots[0].release();
        assert!(
            QuotaSlot::new(quota.clone())
                .acquire(&user("alice"))
                .is_ok()
        );
        drop(slots);
        drop(gateway);
        assert!(quota.in_progress.lock().unwrap().is_empty());
    }
}
