//! Checking the checker: anomalies planted in copies of a history must be found.

use super::checker::{Checker, Report};
use super::history::{Detail, Msg, Op};

/// Runs the checker over copies of `ops` with one kind of anomaly planted in each, and
/// returns how many violations it found for each.
pub fn plant_anomalies(ops: &[Op], checker: &Checker) -> Vec<(&'static str, usize)> {
    let mut out = Vec::new();
    let violations = |ops: &[Op]| {
        let mut report = Report::default();
        let c = Checker::new(ops, &mut report);
        c.run(&mut report);
        report.violations.len()
    };
    let reads = |ops: &[Op]| -> Vec<usize> {
        ops.iter()
            .enumerate()
            .filter(|(_, o)| matches!(&o.detail, Detail::Read { messages, complete: true, .. } if messages.len() >= 3))
            .map(|(i, _)| i)
            .collect()
    };
    let candidates = reads(ops);
    let mut edit = |what: &'static str, f: &dyn Fn(&mut Vec<Msg>)| {
        let mut found = 0;
        for &i in candidates.iter().take(3) {
            let mut copy = ops.to_vec();
            if let Detail::Read { messages, .. } = &mut copy[i].detail {
                f(messages);
            }
            found += violations(&copy);
        }
        out.push((what, found));
    };
    edit(
        "a lost message (one dropped from the middle of a read)",
        &|m| {
            m.remove(1);
        },
    );
    edit("a duplicate within a read", &|m| {
        let d = m[1].clone();
        m.insert(1, d);
    });
    edit("two messages out of order", &|m| m.swap(0, 1));
    edit("a message with another seq", &|m| m[1].seq += 1_000_000);
    // A message its reader had surely removed, shown again by a later read of that reader.
    let mut found = 0;
    'outer: for (i, op) in ops.iter().enumerate() {
        let Detail::Read {
            key,
            forward,
            messages,
            complete: true,
            ..
        } = &op.detail
        else {
            continue;
        };
        if messages.is_empty() {
            continue;
        }
        for m in checker.registry.values() {
            if &m.key == key
                && checker.definitely_removed_before(&op.user, m, op.invoke)
                && !messages.iter().any(|x| x.msg_id == m.msg_id)
            {
                let mut copy = ops.to_vec();
                if let Detail::Read { messages, .. } = &mut copy[i].detail {
                    // Keep the read's order so that only the resurrection is wrong.
                    messages.push(m.clone());
                    messages.sort_by_key(|x| if *forward { x.seq } else { -x.seq });
                }
                found += violations(&copy);
                if found > 0 {
                    break 'outer;
                }
            }
        }
    }
    out.push(("a resurrected message", found));
    out
}
