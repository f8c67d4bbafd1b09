//! Automatic retry of calls that are safe to repeat: exponential backoff with full jitter,
//! bounded in attempts and in time.

use crate::error::Error;
use std::future::Future;
use std::time::{Duration, Instant};

/// When and how often the client repeats a call that failed with a retryable error
/// (`UNAVAILABLE`, see [`Error::is_retryable`]).
///
/// Only calls that are safe to repeat are retried: fetches, lists and removals are
/// idempotent, and so are appends thanks to `client_msg_id`. Attempt `n` (counting from 1)
/// waits a random time in `[0, min(max_backoff, initial_backoff * multiplier^(n-1))]`
/// before the next one ("full jitter"); the client gives up after `max_attempts` attempts or
/// once `max_elapsed` has passed since the first, and returns the last error.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The upper bound of the first wait.
    pub initial_backoff: Duration,
    /// The largest upper bound of any wait.
    pub max_backoff: Duration,
    /// How much the upper bound grows per attempt.
    pub multiplier: f64,
    /// No new attempt starts once this long has passed since the first.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, waits of up to 100 ms, 200 ms, … capped at 5 s, within 30 s in all.
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
            max_elapsed: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The upper bound of the wait after failed attempt `attempt` (counting from 1).
    fn ceiling(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let secs = self.initial_backoff.as_secs_f64() * factor;
        Duration::from_secs_f64(secs.min(self.max_backoff.as_secs_f64()))
    }

    /// The wait after failed attempt `attempt`, or `None` when the client should give up.
    pub(crate) fn next_wait(&self, attempt: u32, started: Instant) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let ceiling = self.ceiling(attempt);
        let wait = ceiling.mul_f64(rand::random::<f64>());
        (started.elapsed() + wait < self.max_elapsed).then_some(wait)
    }

    /// Runs `call` until it succeeds, fails with a non-retryable error, or the policy says
    /// stop.
    pub(crate) async fn run<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match call().await {
                Err(e) if e.is_retryable() => match self.next_wait(attempt, started) {
                    Some(wait) => {
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_exponentially_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(4), Duration::from_millis(800));
        assert_eq!(p.ceiling(20), Duration::from_secs(5));
        let started = Instant::now();
        for attempt in 1..p.max_attempts {
            let wait = p.next_wait(attempt, started).unwrap();
            assert!(wait <= p.ceiling(attempt));
        }
        assert_eq!(p.next_wait(p.max_attempts, started), None);
        assert_eq!(RetryPolicy::none().next_wait(1, started), None);
    }

    #[test]
    fn no_attempt_starts_after_the_time_budget() {
        let p = RetryPolicy {
            max_elapsed: Duration::ZERO,
            ..RetryPolicy::default()
        };
        assert_eq!(p.next_wait(1, Instant::now()), None);
    }

    #[tokio::test]
    async fn a_non_retryable_error_is_returned_at_once() {
        let mut calls = 0;
        let result: Result<(), Error> = RetryPolicy::default()
            .run(|| {
                calls += 1;
                async { Err(Error::NotFound("x".into())) }
            })
            .await;
        assert_eq!(result, Err(Error::NotFound("x".into())));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn unavailable_is_retried_until_it_succeeds() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        let mut calls = 0;
        let result = p
            .run(|| {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(Error::Unavailable("down".into()))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(result, Ok(3));
    }
}
