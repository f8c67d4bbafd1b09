//! The synthetic data set: who talks to whom and how much, scaled by a message budget.
//!
//! Each load stage adds one *generation* of conversations (its own users and keys) whose
//! message counts add up to exactly the stage's budget:
//! - **huge**: three conversations of 10 % of the budget each (one PEER, two GROUPs of up to
//!   200 members) — at the 10M top size, 1M messages each;
//! - **big groups**: 30 % of the budget over `budget / 50k` groups (2..200) of 20..300
//!   members, sizes Pareto-like;
//! - **peers**: the rest, over a ring where every ordinary user has exactly 10 PEER
//!   conversations (users `i` and `i+1..=i+5`), sizes log-normal;
//! - **heavy users** (first generation only): 2 (or 4 from a 100k budget) users with 1,000
//!   PEER conversations each (1..5 messages per conversation).
//!
//! The first users of the ring (the *light* users) are in no group and talk to no heavy user,
//! so they have exactly 10 conversations. Every conversation's newest message is within the
//! last 6 days (so all of them are in the conversation list's default 7-day window: a heavy
//! user's list really sorts 1,000 entries); the oldest go back up to 180 days (365 for huge).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Conversations per heavy user.
pub const HEAVY_CONVERSATIONS: usize = 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// What kind of conversation, for the scenarios that pick one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Class {
    /// An ordinary PEER conversation (ring).
    Peer,
    /// A heavy user's PEER conversation.
    HeavyPeer,
    /// A big group.
    Group,
    /// One of the huge conversations.
    Huge,
}

/// One conversation to load.
#[derive(Debug, Clone)]
pub struct ConvPlan {
    /// `conversations.conv_key`.
    pub key: String,
    /// 1 PEER, 2 GROUP.
    pub kind: i16,
    /// Its class.
    pub class: Class,
    /// Participants, indexes into `Generation::users`. PEER: `[low, high]` in key order.
    /// The reader used by the scenarios is `members[0]`.
    pub members: Vec<u32>,
    /// Number of messages (seq 1..=messages).
    pub messages: u64,
    /// Server time of seq 1.
    pub start_ms: i64,
    /// Server time of the last seq (`conversations.last_time_ms`).
    pub end_ms: i64,
}

impl ConvPlan {
    /// Server time of the message at 0-based position `k`: evenly spread, never decreasing.
    pub fn time_of(&self, k: u64) -> i64 {
        if self.messages <= 1 {
            return self.end_ms;
        }
        let span = (self.end_ms - self.start_ms) as i128;
        self.start_ms + (span * k as i128 / (self.messages - 1) as i128) as i64
    }

    /// The group id (GROUP) — the recipient of its messages.
    pub fn group_id(&self) -> &str {
        self.key.strip_prefix("g:").unwrap_or(&self.key)
    }
}

/// One stage's conversations and users.
#[derive(Debug, Clone)]
pub struct Generation {
    /// 0 for the first stage.
    pub index: u32,
    /// User ids.
    pub users: Vec<String>,
    /// Conversations, in no particular order.
    pub convs: Vec<ConvPlan>,
    /// Users with exactly 10 conversations.
    pub light_users: Vec<u32>,
    /// Users with exactly 1,000 conversations.
    pub heavy_users: Vec<u32>,
    /// Tombstones to write: (conversation index, user index, seq).
    pub tombstones: Vec<(u32, u32, i64)>,
    /// Sum of `messages`.
    pub total_messages: u64,
}

/// Splits `budget` over `weights` proportionally, each part at least 1, summing to `budget`
/// (requires `budget >= weights.len()`).
fn apportion(budget: u64, weights: &[f64]) -> Vec<u64> {
    let n = weights.len() as u64;
    if n == 0 {
        return Vec::new();
    }
    assert!(budget >= n, "budget {budget} below {n} parts");
    let spare = (budget - n) as f64;
    let sum: f64 = weights.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let exact: Vec<f64> = weights.iter().map(|w| spare * w / sum).collect();
    let mut parts: Vec<u64> = exact.iter().map(|e| 1 + e.floor() as u64).collect();
    let mut left = budget - parts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let fa = exact[a] - exact[a].floor();
        let fb = exact[b] - exact[b].floor();
        fb.total_cmp(&fa)
    });
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

/// A standard normal sample (Box-Muller).
fn normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

impl Generation {
    /// Plans generation `index` with exactly `budget` messages, at wall time `now_ms`.
    pub fn plan(index: u32, budget: u64, now_ms: i64, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed ^ (u64::from(index) << 32));
        let prefix = format!("s{index}");
        let mut users: Vec<String> = Vec::new();
        let mut convs: Vec<ConvPlan> = Vec::new();
        let add_user = |users: &mut Vec<String>, name: String| -> u32 {
            users.push(name);
            (users.len() - 1) as u32
        };

        // Budgets.
        let huge_each = budget / 10;
        let heavy_count = match (index, budget) {
            (0, b) if b >= 100_000 => 4,
            (0, _) => 2,
            _ => 0,
        };
        let heavy_per_conv = if heavy_count == 0 {
            0
        } else {
            (budget / 10 / (heavy_count as u64 * HEAVY_CONVERSATIONS as u64)).clamp(1, 5)
        };
        let heavy_total = heavy_count as u64 * HEAVY_CONVERSATIONS as u64 * heavy_per_conv;
        let group_total = budget * 3 / 10;
        let peer_total = budget
            .checked_sub(3 * huge_each + heavy_total + group_total)
            .expect("budget too small for the shapes (use at least 10,000 messages)");
        let peer_mean = (budget as f64 / 2500.0).clamp(4.0, 40.0);
        let ring_users = ((peer_total as f64 / (5.0 * peer_mean)) as usize).max(24);
        let ring_convs = ring_users * 5;
        assert!(
            peer_total >= ring_convs as u64,
            "budget too small for the shapes (use at least 10,000 messages)"
        );
        let light_count = (ring_users / 2).min(100);

        let ring: Vec<u32> = (0..ring_users)
            .map(|i| add_user(&mut users, format!("{prefix}u{i}")))
            .collect();
        let pool: Vec<u32> = ring[light_count..].to_vec();

        let times = |rng: &mut SmallRng, max_age_days: i64| -> (i64, i64) {
            let end = now_ms - rng.random_range(60_000..6 * DAY_MS);
            let start = end - rng.random_range(0..max_age_days * DAY_MS);
            (start, end)
        };
        let peer_key = |users: &[String], a: u32, b: u32| -> (String, Vec<u32>) {
            let (lo, hi) = if users[a as usize] <= users[b as usize] {
                (a, b)
            } else {
                (b, a)
            };
            (
                format!("p:{}:{}", users[lo as usize], users[hi as usize]),
                vec![lo, hi],
            )
        };

        // Ring peers: log-normal sizes (sigma 1.2), apportioned to the budget.
        let weights: Vec<f64> = (0..ring_convs)
            .map(|_| (1.2 * normal(&mut rng)).exp())
            .collect();
        let sizes = apportion(peer_total, &weights);
        for (c, &n) in sizes.iter().enumerate() {
            let i = c / 5;
            let j = (i + 1 + c % 5) % ring_users;
            let (key, members) = peer_key(&users, ring[i], ring[j]);
            let (start_ms, end_ms) = times(&mut rng, 180);
            convs.push(ConvPlan {
                key,
                kind: 1,
                class: Class::Peer,
                members,
                messages: n,
                start_ms,
                end_ms,
            });
        }

        // Heavy users: 1,000 PEER conversations each, with partners of their own.
        let mut heavy_users = Vec::new();
        for h in 0..heavy_count {
            let me = add_user(&mut users, format!("{prefix}heavy{h}"));
            heavy_users.push(me);
            for p in 0..HEAVY_CONVERSATIONS {
                let partner = add_user(&mut users, format!("{prefix}h{h}p{p}"));
                let (key, mut members) = peer_key(&users, me, partner);
                // The heavy user reads: put them first.
                if members[0] != me {
                    members.swap(0, 1);
                }
                let (start_ms, end_ms) = times(&mut rng, 180);
                convs.push(ConvPlan {
                    key,
                    kind: 1,
                    class: Class::HeavyPeer,
                    members,
                    messages: heavy_per_conv,
                    start_ms,
                    end_ms,
                });
            }
        }

        // Big groups: Pareto-like sizes (alpha 1.5).
        let group_count = (budget / 50_000).clamp(2, 200) as usize;
        let weights: Vec<f64> = (0..group_count)
            .map(|_| {
                let u: f64 = rng.random_range(0.05..1.0);
                u.powf(-1.0 / 1.5)
            })
            .collect();
        let sizes = apportion(group_total, &weights);
        let pick_members = |rng: &mut SmallRng, n: usize| -> Vec<u32> {
            let n = n.min(pool.len()).max(1);
            let mut chosen: Vec<u32> = Vec::with_capacity(n);
            let start = rng.random_range(0..pool.len());
            let step = rng.random_range(1..=7usize);
            let mut i = start;
            while chosen.len() < n {
                let u = pool[i % pool.len()];
                if !chosen.contains(&u) {
                    chosen.push(u);
                } else {
                    i += 1;
                }
                i += step;
            }
            chosen
        };
        for (g, &n) in sizes.iter().enumerate() {
            let member_count = rng.random_range(20..=300usize);
            let members = pick_members(&mut rng, member_count);
            let (start_ms, end_ms) = times(&mut rng, 180);
            convs.push(ConvPlan {
                key: format!("g:{prefix}g{g}"),
                kind: 2,
                class: Class::Group,
                members,
                messages: n,
                start_ms,
                end_ms,
            });
        }

        // Huge: one PEER and two GROUPs.
        let a = add_user(&mut users, format!("{prefix}hugeA"));
        let b = add_user(&mut users, format!("{prefix}hugeB"));
        let (key, members) = peer_key(&users, a, b);
        let (_, end_ms) = times(&mut rng, 1);
        convs.push(ConvPlan {
            key,
            kind: 1,
            class: Class::Huge,
            members,
            messages: huge_each,
            start_ms: now_ms - 365 * DAY_MS,
            end_ms,
        });
        for h in 0..2 {
            let members = pick_members(&mut rng, 200);
            let (_, end_ms) = times(&mut rng, 1);
            convs.push(ConvPlan {
                key: format!("g:{prefix}huge{h}"),
                kind: 2,
                class: Class::Huge,
                members,
                messages: huge_each,
                start_ms: now_ms - 365 * DAY_MS,
                end_ms,
            });
        }

        // One-way removals, so the tombstone anti-join has rows to look at.
        let mut tombstones = Vec::new();
        for (c, conv) in convs.iter().enumerate() {
            let (count, chance) = match conv.class {
                Class::Peer if conv.messages >= 10 => (2, 0.05),
                Class::Group => (10, 0.2),
                Class::Huge => (100, 1.0),
                _ => (0, 0.0),
            };
            if count > 0 && rng.random_bool(chance) {
                let mut seqs: Vec<i64> = (0..count)
                    .map(|_| rng.random_range(1..=conv.messages as i64))
                    .collect();
                seqs.sort_unstable();
                seqs.dedup();
                for s in seqs {
                    tombstones.push((c as u32, conv.members[0], s));
                }
            }
        }

        let total_messages = convs.iter().map(|c| c.messages).sum();
        debug_assert_eq!(total_messages, budget);
        Self {
            index,
            users,
            convs,
            light_users: ring[..light_count].to_vec(),
            heavy_users,
            tombstones,
            total_messages,
        }
    }

    /// The user id at `index`.
    pub fn user(&self, index: u32) -> &str {
        &self.users[index as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_exact_and_light_users_have_ten() {
        for budget in [10_000u64, 100_000, 1_000_000] {
            let g = Generation::plan(0, budget, 1_800_000_000_000, 7);
            assert_eq!(g.total_messages, budget);
            let keys: std::collections::HashSet<&str> =
                g.convs.iter().map(|c| c.key.as_str()).collect();
            assert_eq!(keys.len(), g.convs.len(), "keys are unique");
            for &u in &g.light_users {
                let n = g.convs.iter().filter(|c| c.members.contains(&u)).count();
                assert_eq!(n, 10, "light user {}", g.user(u));
            }
            for &u in &g.heavy_users {
                let n = g.convs.iter().filter(|c| c.members.contains(&u)).count();
                assert_eq!(n, HEAVY_CONVERSATIONS);
            }
            for c in &g.convs {
                assert!(c.time_of(0) <= c.time_of(c.messages.saturating_sub(1)));
                assert_eq!(c.time_of(c.messages - 1), c.end_ms);
            }
        }
    }

    #[test]
    fn apportion_sums() {
        let parts = apportion(100, &[1.0, 2.0, 3.0, 0.0]);
        assert_eq!(parts.iter().sum::<u64>(), 100);
        assert!(parts.iter().all(|&p| p >= 1));
    }
}
