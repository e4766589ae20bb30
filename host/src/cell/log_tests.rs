//! Log cells against a model: every operation a log takes (appends, trims,
//! the kernel's windowed push, in-place changes, changes that make it a
//! plain list, deletion and re-creation), over several commits, with forks
//! that append to the same shared segment from one snapshot.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::node::children::SEGMENT_SLOTS;
use super::tests::{commit as commit_with, p};
use super::*;

fn n(text: &str) -> Name {
    Name::new(text).unwrap()
}

const LOG: &str = "/d/log";

fn entry(name: &str) -> Path {
    p(&format!("{LOG}/{name}"))
}

/// One entry of the model: its value and the value of its child `c`.
type Cells = BTreeMap<String, (Option<i64>, Option<i64>)>;

#[derive(Clone, Debug, Default)]
struct Model {
    exists: bool,
    log: bool,
    cells: Cells,
    /// The next index name an append uses.
    next: u64,
    /// Entries appended in the current batch (a window drops only
    /// entries of earlier batches).
    fresh: usize,
}

#[derive(Clone, Debug)]
enum LogOp {
    Append(i64),
    AppendWithChild(i64),
    /// The kernel's history push: append, dropping whole segments from
    /// the front past `keep`.
    Windowed(u8, i64),
    KeepNewest(u8),
    Change(u8, i64),
    ChangeChild(u8, i64),
    /// A name just after entry i: an append when i is the last, else an
    /// insert a log cannot take.
    InsertAfter(u8, i64),
    Remove(u8),
    /// Delete the log and make a new one in the same batch.
    Recreate,
    /// Before this batch commits, another tree from the same snapshot
    /// appends and commits.
    Fork(i64),
}

fn log_op() -> impl Strategy<Value = LogOp> {
    prop_oneof![
        6 => any::<i64>().prop_map(LogOp::Append),
        2 => any::<i64>().prop_map(LogOp::AppendWithChild),
        4 => (1u8..20, any::<i64>()).prop_map(|(k, v)| LogOp::Windowed(k, v)),
        1 => (0u8..20).prop_map(LogOp::KeepNewest),
        2 => (any::<u8>(), any::<i64>()).prop_map(|(i, v)| LogOp::Change(i, v)),
        1 => (any::<u8>(), any::<i64>()).prop_map(|(i, v)| LogOp::ChangeChild(i, v)),
        1 => (any::<u8>(), any::<i64>()).prop_map(|(i, v)| LogOp::InsertAfter(i, v)),
        1 => any::<u8>().prop_map(LogOp::Remove),
        1 => Just(LogOp::Recreate),
        1 => any::<i64>().prop_map(LogOp::Fork),
    ]
}

fn make_log(t: &mut WorkTree) {
    t.cell_mut(&p("/d")).unwrap().log_child(&n("log")).unwrap();
}

/// Applies `op` to the tree and the model alike (a fork is done by the
/// caller).
fn apply(op: &LogOp, t: &mut WorkTree, m: &mut Model) {
    let names: Vec<String> = m.cells.keys().cloned().collect();
    let pick = |i: u8| names.get(i as usize % names.len().max(1)).cloned();
    let append = |m: &mut Model| {
        let name = Name::from_index(m.next).to_string();
        m.next += 1;
        m.fresh += 1;
        if !m.exists {
            m.exists = true;
            m.log = false;
        }
        name
    };
    match *op {
        LogOp::Append(v) => {
            let name = append(m);
            t.write(&entry(&name), Value::I64(v)).unwrap();
            m.cells.insert(name, (Some(v), None));
        }
        LogOp::AppendWithChild(v) => {
            let name = append(m);
            t.write(&entry(&format!("{name}/c")), Value::I64(v))
                .unwrap();
            m.cells.insert(name, (None, Some(v)));
        }
        LogOp::Windowed(keep, v) => {
            let keep = keep as usize;
            if !m.exists {
                m.exists = true;
                m.log = true;
            }
            let name = Name::from_index(m.next);
            m.next += 1;
            m.fresh += 1;
            let mut d = t.cell_mut(&p("/d")).unwrap();
            let mut log = d.log_child(&n("log")).unwrap();
            log.push_windowed(&name, keep)
                .unwrap()
                .set_value(Value::I64(v));
            m.cells.insert(name.to_string(), (Some(v), None));
            let left = t.node(&p(LOG)).unwrap().child_count();
            // At least `keep` stay; whole segments (chunks) go.
            let slack = if m.log {
                SEGMENT_SLOTS
            } else {
                hash::NODE_ITEMS_MAX
            };
            assert!(left >= keep.min(m.cells.len()), "{left} < keep {keep}");
            assert!(left < keep + slack + m.fresh || left == m.cells.len());
            while m.cells.len() > left {
                m.cells.pop_first();
            }
        }
        LogOp::KeepNewest(keep) => {
            t.keep_newest(&p(LOG), keep as usize).unwrap();
            while m.cells.len() > (keep as usize).max(1) {
                m.cells.pop_first();
            }
        }
        LogOp::Change(i, v) => {
            if let Some(name) = pick(i) {
                t.write(&entry(&name), Value::I64(v)).unwrap();
                m.cells.get_mut(&name).unwrap().0 = Some(v);
            }
        }
        LogOp::ChangeChild(i, v) => {
            if let Some(name) = pick(i) {
                t.write(&entry(&format!("{name}/c")), Value::I64(v))
                    .unwrap();
                m.cells.get_mut(&name).unwrap().1 = Some(v);
            }
        }
        LogOp::InsertAfter(i, v) => {
            if let Some(after) = pick(i) {
                let name = format!("{after}x");
                if m.cells.contains_key(&name) {
                    return;
                }
                let last = m.cells.keys().next_back() == Some(&after);
                t.write(&entry(&name), Value::I64(v)).unwrap();
                m.log &= last;
                m.cells.insert(name, (Some(v), None));
            }
        }
        LogOp::Remove(i) => {
            if let Some(name) = pick(i) {
                let first = m.cells.keys().next() == Some(&name);
                assert!(t.delete(&entry(&name)).unwrap());
                m.log &= first;
                m.cells.remove(&name);
            }
        }
        LogOp::Recreate => {
            t.delete(&p(LOG)).unwrap();
            make_log(t);
            *m = Model {
                exists: true,
                log: true,
                cells: Cells::new(),
                next: m.next,
                fresh: 0,
            };
        }
        LogOp::Fork(_) => {}
    }
}

/// What a snapshot holds at the log, as the model says it should.
fn check(s: &Snapshot, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.hash(), s.recompute_hash(), "cached hash");
    let Some(node) = s.node(&p(LOG)) else {
        prop_assert!(!m.exists);
        return Ok(());
    };
    prop_assert!(m.exists);
    prop_assert_eq!(node.is_log(), m.log, "log or plain");
    super::node::children::check_cached(&node.children);
    let mut got = Cells::new();
    node.for_each_child(&mut |name, child| {
        let value = |n: Option<&Node>| match n.and_then(Node::value) {
            Some(Value::I64(v)) => Some(*v),
            _ => None,
        };
        got.insert(
            name.to_string(),
            (value(Some(child)), value(child.child("c"))),
        );
    });
    prop_assert_eq!(&got, &m.cells);
    prop_assert_eq!(node.child_count(), m.cells.len());
    for name in m.cells.keys() {
        prop_assert!(node.child(name).is_some(), "{} found by search", name);
    }
    Ok(())
}

/// Applying `diff(old, new)` to `old` gives `new`, and a diff from the
/// empty tree rebuilds it whole.
fn check_diff(old: &Snapshot, new: &Snapshot) -> Result<(), TestCaseError> {
    let apply_all = |base: &Snapshot, changes: &[Change]| {
        let mut t = WorkTree::new(base);
        for c in changes {
            t.apply(c).unwrap();
        }
        t.commit(base.beat() + 1)
    };
    let rebuilt = apply_all(old, &diff(old, new));
    prop_assert_eq!(rebuilt.hash(), new.hash(), "old + diff");
    prop_assert_eq!(rebuilt.recompute_hash(), new.hash());
    let whole = apply_all(&Snapshot::empty(), &diff(&Snapshot::empty(), new));
    prop_assert_eq!(whole.hash(), new.hash(), "empty + diff");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Every snapshot of a log holds what the model holds, with a cached
    /// hash equal to the hash from scratch, diffs that rebuild it; forks
    /// that appended into the segment the main line then appends into keep
    /// what they hold to the end.
    #[test]
    fn a_log_holds_what_the_model_holds(batches in prop::collection::vec(prop::collection::vec(log_op(), 1..12), 1..14)) {
        let mut s = commit_with(&Snapshot::empty(), 0, |t| {
            t.write(&p("/d/x"), Value::Null).unwrap();
            make_log(t);
        });
        let mut m = Model { exists: true, log: true, ..Model::default() };
        let mut kept: Vec<(Snapshot, Model)> = vec![(s.clone(), m.clone())];
        for (beat, batch) in batches.iter().enumerate() {
            let beat = beat as u64 + 1;
            for op in batch {
                if let LogOp::Fork(v) = op {
                    let mut fm = m.clone();
                    let fork = commit_with(&s, beat, |t| apply(&LogOp::Append(*v), t, &mut fm));
                    check(&fork, &fm)?;
                    kept.push((fork, fm));
                }
            }
            let (old, old_model) = (s.clone(), m.clone());
            m.fresh = 0;
            s = commit_with(&s, beat, |t| {
                for op in batch {
                    apply(op, t, &mut m);
                }
                // A plain list beside the log, changed in the same batch:
                // the commit hashes both kinds of list together.
                t.write(&p(&format!("/d/plain/{beat}")), Value::Null).unwrap();
            });
            check(&s, &m)?;
            check(&old, &old_model)?;
            check_diff(&old, &s)?;
            kept.push((s.clone(), m.clone()));
        }
        for (snapshot, model) in &kept {
            check(snapshot, model)?;
        }
    }
}

/// A log and a plain list of the same children hash differently, and a
/// trimmed log differs from a log that never held the trimmed entries.
#[test]
fn a_log_hash_commits_to_being_a_log_and_to_what_it_trimmed() {
    let build = |log: bool, from: u64| {
        commit_with(&Snapshot::empty(), 1, |t| {
            if log {
                make_log(t);
            }
            for i in from..10 {
                t.write(
                    &entry(&Name::from_index(i).to_string()),
                    Value::I64(i as i64),
                )
                .unwrap();
            }
        })
    };
    let (plain, log) = (build(false, 0), build(true, 0));
    assert_ne!(plain.hash(), log.hash());
    let trimmed = commit_with(&log, 2, |t| t.keep_newest(&p(LOG), 5).unwrap());
    let fresh = build(true, 5);
    assert_eq!(trimmed.children(&p(LOG)), fresh.children(&p(LOG)));
    assert_ne!(trimmed.hash(), fresh.hash(), "the base commits to the trim");
    assert_eq!(trimmed.hash(), trimmed.recompute_hash());
}

/// An append writes its slot in place: the snapshot before it shares the
/// segment, reads nothing new, and its hash is unchanged.
#[test]
fn an_append_shares_the_segment_with_the_snapshot_before_it() {
    let s1 = commit_with(&Snapshot::empty(), 1, |t| {
        make_log(t);
        t.write(&entry("0000000000"), Value::I64(0)).unwrap();
    });
    let s2 = commit_with(&s1, 2, |t| {
        t.write(&entry("0000000001"), Value::I64(1)).unwrap();
    });
    let (a, b) = (s1.node(&p(LOG)).unwrap(), s2.node(&p(LOG)).unwrap());
    assert_eq!(a.child_count(), 1);
    assert_eq!(b.child_count(), 2);
    assert_eq!(s1.hash(), s1.recompute_hash());
    assert_eq!(s2.hash(), s2.recompute_hash());
    assert!(a.children.shares_segment_with(&b.children));
    // `cep inspect` says which cells are logs.
    let rendered = s2.render(&p("/d")).unwrap();
    assert!(rendered.contains("\n  log [log]\n"), "{rendered}");
}

/// Two threads append to one log from the same snapshot at once, again
/// and again: each time one of them takes the shared slot and the other
/// copies the segment, and both results hold their own entry, hash as
/// from scratch, and leave the snapshot they came from as it was.
#[test]
fn two_threads_appending_to_one_snapshot_each_get_their_own_log() {
    let mut base = commit_with(&Snapshot::empty(), 0, |t| {
        make_log(t);
        for i in 0..5 {
            t.write(&entry(&Name::from_index(i).to_string()), Value::I64(0))
                .unwrap();
        }
    });
    for round in 0..200u64 {
        let next = Name::from_index(5 + round).to_string();
        let before = base.hash();
        let barrier = std::sync::Barrier::new(2);
        let forks: Vec<Snapshot> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2i64)
                .map(|side| {
                    let (base, barrier, next) = (&base, &barrier, &next);
                    scope.spawn(move || {
                        let mut t = WorkTree::new(base);
                        t.write(&entry(next), Value::I64(side)).unwrap();
                        barrier.wait();
                        t.commit(round + 1)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (side, fork) in forks.iter().enumerate() {
            assert_eq!(fork.read(&entry(&next)), Some(&Value::I64(side as i64)));
            assert_eq!(fork.hash(), fork.recompute_hash(), "round {round}");
        }
        assert_ne!(forks[0].hash(), forks[1].hash());
        assert_eq!(base.hash(), before);
        assert_eq!(base.hash(), base.recompute_hash());
        assert!(base.read(&entry(&next)).is_none());
        base = forks[(round % 2) as usize].clone();
    }
}

/// A window trims whole segments by moving the log's start only; the
/// segments it passes leave the list when the next segment opens. Over
/// many beats the list never holds more than the live segments and the
/// one trimmed since, and every beat hashes as from scratch.
#[test]
fn trimmed_segments_leave_the_list_when_the_next_one_opens() {
    const KEEP: usize = 12;
    let mut s = commit_with(&Snapshot::empty(), 0, make_log);
    for beat in 1..=60u64 {
        s = commit_with(&s, beat, |t| {
            let mut d = t.cell_mut(&p("/d")).unwrap();
            let mut log = d.log_child(&n("log")).unwrap();
            let name = Name::from_index(beat);
            log.push_windowed(&name, KEEP)
                .unwrap()
                .set_value(Value::I64(beat as i64));
        });
        let log = s.node(&p(LOG)).unwrap();
        let live = log.child_count().div_ceil(SEGMENT_SLOTS);
        let held = log.children.log_segments_held().unwrap();
        assert!(
            held >= live && held <= live + 1,
            "beat {beat}: {held} segments held for {live} live"
        );
        assert!(log.child_count() >= KEEP.min(beat as usize));
        assert!(log.child_count() < KEEP + SEGMENT_SLOTS);
        assert_eq!(s.hash(), s.recompute_hash(), "beat {beat}");
        let newest = Name::from_index(beat).to_string();
        assert_eq!(s.read(&entry(&newest)), Some(&Value::I64(beat as i64)));
    }
}

/// A trim of whole segments takes its new base from the link the last
/// trimmed segment ends with, as the list of segments records it. Entries
/// changed in earlier beats (their links rehashed) must leave that record
/// right: a windowed log's base and digest always equal the links of an
/// untrimmed twin that took the same appends and changes.
#[test]
fn a_trim_takes_its_base_from_the_links_the_chain_really_has() {
    const KEEP: usize = 10;
    let twins = |t: &mut WorkTree| {
        let mut d = t.cell_mut(&p("/d")).unwrap();
        d.log_child(&n("log")).unwrap();
        d.log_child(&n("all")).unwrap();
    };
    let mut s = commit_with(&Snapshot::empty(), 0, twins);
    for beat in 1..=80u64 {
        s = commit_with(&s, beat, |t| {
            let windowed = t.node(&p(LOG)).unwrap().child_names();
            // For 32 beats only appends (each trim takes the end its
            // segment recorded when the next one opened); then changes of
            // an entry published earlier in both logs (the first one kept,
            // one that ends a segment, a middle one), or none: with a
            // period prime to the segment's, trims meet each case.
            let changed = match beat % 5 {
                _ if beat <= 32 => None,
                0 => windowed.first(),
                1 => windowed.get(windowed.len().saturating_sub(3)),
                2 => windowed.iter().rev().find(|name| {
                    let at: usize = name.as_str().parse().unwrap();
                    (at + 1).is_multiple_of(SEGMENT_SLOTS)
                }),
                _ => None,
            };
            if let Some(name) = changed.cloned() {
                for log in ["log", "all"] {
                    let at = p(&format!("/d/{log}/{name}"));
                    t.write(&at, Value::I64(-(beat as i64))).unwrap();
                }
            }
            let mut d = t.cell_mut(&p("/d")).unwrap();
            let name = Name::from_index(beat);
            for (log, keep) in [("log", KEEP), ("all", usize::MAX)] {
                let mut log = d.log_child(&n(log)).unwrap();
                log.push_windowed(&name, keep)
                    .unwrap()
                    .set_value(Value::I64(beat as i64));
            }
        });
        let windowed = s.node(&p(LOG)).unwrap();
        let all = s.node(&p("/d/all")).unwrap();
        let first = windowed.first_child_name().unwrap().as_str();
        let (base, _) = windowed.children.log_base_and_link(first).unwrap();
        let expected = match all.first_child_name().unwrap().as_str() == first {
            true => all.children.log_base_and_link(first).unwrap().0,
            false => {
                let before = Name::from_index(first.parse::<u64>().unwrap() - 1);
                let (_, link) = all.children.log_base_and_link(before.as_str()).unwrap();
                link.unwrap()
            }
        };
        assert_eq!(
            base, expected,
            "beat {beat}: the base of a log starting at {first}"
        );
        let newest = Name::from_index(beat);
        let link = |node: &Node| node.children.log_base_and_link(newest.as_str()).unwrap().1;
        assert_eq!(link(windowed), link(all), "beat {beat}: the digests");
        assert_eq!(s.hash(), s.recompute_hash(), "beat {beat}");
    }
}
