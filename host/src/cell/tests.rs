use proptest::prelude::*;

use super::*;

pub(super) fn p(text: &str) -> Path {
    Path::parse(text).unwrap()
}

pub(super) fn commit(base: &Snapshot, beat: u64, f: impl FnOnce(&mut WorkTree)) -> Snapshot {
    let mut tree = WorkTree::new(base);
    f(&mut tree);
    tree.commit(beat)
}

#[test]
fn writes_create_ancestors_and_commit_is_visible_only_in_the_new_snapshot() {
    let s0 = Snapshot::empty();
    let s1 = commit(&s0, 0, |t| t.write(&p("/data/a/b"), Value::I64(7)).unwrap());
    assert_eq!(s1.read(&p("/data/a/b")), Some(&Value::I64(7)));
    assert!(s1.exists(&p("/data/a")));
    assert_eq!(s0.read(&p("/data/a/b")), None);
    assert_ne!(s0.hash(), s1.hash());
}

#[test]
fn incremental_hash_equals_hash_from_scratch() {
    let mut s = Snapshot::empty();
    for round in 0..5u64 {
        s = commit(&s, round, |t| {
            for i in 0..200u64 {
                let path = p(&format!("/data/n{}/c{}", i % 7, (i * 31 + round) % 50));
                t.write(&path, Value::I64((i * round) as i64)).unwrap();
            }
            t.delete(&p("/data/n3")).unwrap();
        });
        assert_eq!(s.hash(), s.recompute_hash(), "round {round}");
    }
}

#[test]
fn equal_trees_hash_equal_whatever_the_insertion_order() {
    let forward = commit(&Snapshot::empty(), 0, |t| {
        for i in 0..100 {
            t.write(&p(&format!("/x/{i}")), Value::I64(i)).unwrap();
        }
    });
    let backward = commit(&Snapshot::empty(), 0, |t| {
        for i in (0..100).rev() {
            t.write(&p(&format!("/x/{i}")), Value::I64(i)).unwrap();
        }
    });
    assert_eq!(forward.hash(), backward.hash());
}

#[test]
fn values_of_different_types_hash_differently() {
    let values = [
        Value::Null,
        Value::Bool(false),
        Value::I64(0),
        Value::F64(0.0),
        Value::text(""),
        Value::bytes(b""),
    ];
    let hashes: std::collections::BTreeSet<Hash> = values
        .iter()
        .map(|v| {
            commit(&Snapshot::empty(), 0, |t| {
                t.write(&p("/v"), v.clone()).unwrap()
            })
            .hash()
        })
        .collect();
    assert_eq!(hashes.len(), values.len());
    let no_value = commit(&Snapshot::empty(), 0, |t| {
        t.write(&p("/v"), Value::Null).unwrap();
        t.clear_value(&p("/v")).unwrap();
    });
    assert!(!hashes.contains(&no_value.hash()));
}

#[test]
fn every_nan_hashes_the_same() {
    let a = commit(&Snapshot::empty(), 0, |t| {
        t.write(&p("/f"), Value::F64(f64::NAN)).unwrap()
    });
    let b = commit(&Snapshot::empty(), 0, |t| {
        t.write(&p("/f"), Value::F64(f64::from_bits(0x7ff8_dead_beef_0001)))
            .unwrap()
    });
    assert_eq!(a.hash(), b.hash());
}

#[test]
fn sealed_cells_refuse_changes_at_and_below_them() {
    let s = commit(&Snapshot::empty(), 0, |t| {
        t.write(&p("/sys/desc/name"), Value::text("x")).unwrap();
        t.seal(&p("/sys/desc")).unwrap();
    });
    let mut t = WorkTree::new(&s);
    let err = t.write(&p("/sys/desc/name"), Value::text("y")).unwrap_err();
    assert_eq!(
        err,
        TreeError::Sealed {
            path: p("/sys/desc/name"),
            sealed_at: p("/sys/desc")
        }
    );
    assert!(err.to_string().contains("/sys/desc is sealed"));
    assert!(t.write(&p("/sys/desc"), Value::I64(1)).is_err());
    assert!(t.delete(&p("/sys/desc/name")).is_err());
    assert!(t.append(&p("/sys/desc"), Value::I64(1)).is_err());
    assert_eq!(
        t.delete(&p("/sys")).unwrap_err(),
        TreeError::HoldsSealed { path: p("/sys") }
    );
    assert!(t.write(&p("/sys/other"), Value::I64(1)).is_ok());
    let next = t.commit(1);
    assert_eq!(next.read(&p("/sys/desc/name")), Some(&Value::text("x")));
    assert!(next.node(&p("/sys/desc")).unwrap().is_sealed());
}

#[test]
fn append_names_children_by_increasing_index() {
    let s = commit(&Snapshot::empty(), 0, |t| {
        for i in 0..12 {
            t.append(&p("/log"), Value::I64(i)).unwrap();
        }
    });
    let names = s.children(&p("/log"));
    assert_eq!(names.len(), 12);
    assert_eq!(names[0].as_str(), "0000000000");
    assert_eq!(names[11].as_str(), "0000000011");
    let s = commit(&s, 1, |t| {
        t.delete(&p("/log/0000000000")).unwrap();
        t.append(&p("/log"), Value::I64(99)).unwrap();
    });
    assert_eq!(s.read(&p("/log/0000000012")), Some(&Value::I64(99)));
}

#[test]
fn wide_nodes_read_write_and_hash_like_flat_ones() {
    // 5,000 children: a chunk tree three levels high.
    let mut s = commit(&Snapshot::empty(), 0, |t| {
        for i in 0..5000u64 {
            t.write(&p(&format!("/wide/{i:06}")), Value::I64(i as i64))
                .unwrap();
        }
    });
    assert_eq!(s.hash(), s.recompute_hash());
    assert_eq!(s.read(&p("/wide/004321")), Some(&Value::I64(4321)));
    assert_eq!(s.node(&p("/wide")).unwrap().child_count(), 5000);
    for beat in 1..4 {
        s = commit(&s, beat, |t| {
            t.write(&p("/wide/000017"), Value::I64(beat as i64))
                .unwrap();
            t.write(&p(&format!("/wide/00{beat}999")), Value::text("changed"))
                .unwrap();
        });
        assert_eq!(s.hash(), s.recompute_hash(), "after rewrite {beat}");
    }
    s = commit(&s, 9, |t| {
        t.delete(&p("/wide/002500")).unwrap();
        t.write(&p("/wide/0025005"), Value::Null).unwrap();
        t.write(&p("/wide/a-late-name"), Value::Null).unwrap();
    });
    assert_eq!(s.hash(), s.recompute_hash(), "after inserts and deletes");
    let names = s.children(&p("/wide"));
    assert_eq!(names.len(), 5001);
    assert!(names.windows(2).all(|w| w[0] < w[1]));
    // Shrinking back to one chunk goes back to the flat form with equal hashes.
    s = commit(&s, 10, |t| {
        for name in names.iter().skip(10) {
            t.delete(&p(&format!("/wide/{name}"))).unwrap();
        }
    });
    assert_eq!(s.hash(), s.recompute_hash());
    assert_eq!(s.children(&p("/wide")).len(), 10);
}

#[test]
fn history_keeps_the_last_k_snapshots_for_read_at() {
    let mut history = History::new(3);
    let mut s = Snapshot::empty();
    for beat in 0..6u64 {
        s = commit(&s, beat, |t| {
            t.write(&p("/n"), Value::I64(beat as i64)).unwrap()
        });
        history.push(s.clone());
    }
    assert_eq!(history.len(), 3);
    assert_eq!(history.read_at(&p("/n"), 5), Some(&Value::I64(5)));
    assert_eq!(history.read_at(&p("/n"), 3), Some(&Value::I64(3)));
    assert_eq!(history.read_at(&p("/n"), 2), None);
    assert_eq!(history.read_at(&p("/n"), 9), None);
}

#[test]
fn snapshots_are_readable_from_other_threads_while_the_next_commits() {
    let s = commit(&Snapshot::empty(), 0, |t| {
        for i in 0..1000 {
            t.write(&p(&format!("/d/{i}")), Value::I64(i)).unwrap();
        }
    });
    let reader = s.clone();
    let handle = std::thread::spawn(move || {
        (0..1000)
            .map(|i| {
                reader
                    .read(&p(&format!("/d/{i}")))
                    .and_then(Value::as_i64)
                    .unwrap()
            })
            .sum::<i64>()
    });
    let next = commit(&s, 1, |t| {
        for i in 0..1000 {
            t.write(&p(&format!("/d/{i}")), Value::I64(0)).unwrap();
        }
    });
    assert_eq!(handle.join().unwrap(), (0..1000).sum::<i64>());
    assert_eq!(next.read(&p("/d/5")), Some(&Value::I64(0)));
    assert_eq!(s.read(&p("/d/5")), Some(&Value::I64(5)));
}

#[derive(Debug, Clone)]
enum TreeOp {
    Write(u8, u8, i64),
    Delete(u8, u8),
    DeleteParent(u8),
    Append(u8),
}

fn tree_op() -> impl Strategy<Value = TreeOp> {
    prop_oneof![
        4 => (0u8..6, 0u8..80, any::<i64>()).prop_map(|(a, b, v)| TreeOp::Write(a, b, v)),
        2 => (0u8..6, 0u8..80).prop_map(|(a, b)| TreeOp::Delete(a, b)),
        1 => (0u8..6).prop_map(TreeOp::DeleteParent),
        1 => (0u8..6).prop_map(TreeOp::Append),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the batch of operations, the cached incremental hash equals
    /// the hash computed from scratch, and the old snapshot is untouched.
    #[test]
    fn incremental_hash_matches_full_hash(batches in prop::collection::vec(prop::collection::vec(tree_op(), 1..120), 1..5)) {
        let mut s = Snapshot::empty();
        for (beat, batch) in batches.into_iter().enumerate() {
            let before = s.hash();
            let old = s.clone();
            s = commit(&s, beat as u64, |t| {
                for op in batch {
                    match op {
                        TreeOp::Write(a, b, v) => t.write(&p(&format!("/t/{a}/{b:03}")), Value::I64(v)).unwrap(),
                        TreeOp::Delete(a, b) => { t.delete(&p(&format!("/t/{a}/{b:03}"))).unwrap(); }
                        TreeOp::DeleteParent(a) => { t.delete(&p(&format!("/t/{a}"))).unwrap(); }
                        TreeOp::Append(a) => { t.append(&p(&format!("/t/{a}")), Value::Null).unwrap(); }
                    }
                }
            });
            prop_assert_eq!(s.hash(), s.recompute_hash());
            prop_assert_eq!(old.hash(), before);
            prop_assert_eq!(old.recompute_hash(), before);
        }
    }
}

#[test]
fn wide_node_search_finds_every_name_and_no_other() {
    // Even numbers present; odd ones, and names below and above all, absent.
    let s = commit(&Snapshot::empty(), 0, |t| {
        for i in (0..4000u64).step_by(2) {
            t.write(&p(&format!("/w/{i:05}")), Value::I64(i as i64))
                .unwrap();
        }
    });
    let node = s.node(&p("/w")).unwrap();
    for probe in (0..4001u64)
        .map(|i| format!("{i:05}"))
        .chain(["!".to_owned(), "~".to_owned()])
    {
        let expected = probe
            .parse::<u64>()
            .ok()
            .filter(|i| i % 2 == 0 && *i < 4000);
        let found = node
            .child(&probe)
            .and_then(|n| n.value())
            .and_then(Value::as_i64);
        assert_eq!(found, expected.map(|i| i as i64), "probe {probe}");
    }
}

#[test]
fn keep_newest_trims_the_oldest_children_but_never_sealed_ones() {
    let s = commit(&Snapshot::empty(), 0, |t| {
        for i in 0..40 {
            t.append(&p("/log"), Value::I64(i)).unwrap();
        }
        t.keep_newest(&p("/log"), 10).unwrap();
    });
    let names = s.children(&p("/log"));
    assert_eq!(names.len(), 10);
    assert_eq!(names[0].as_str(), "0000000030");
    assert_eq!(s.hash(), s.recompute_hash());
    let mut t = WorkTree::new(&s);
    t.seal(&p("/log/0000000031")).unwrap();
    let err = t.keep_newest(&p("/log"), 5).unwrap_err();
    assert_eq!(
        err,
        TreeError::HoldsSealed {
            path: p("/log/0000000031")
        }
    );
    assert_eq!(
        t.node(&p("/log")).unwrap().child_count(),
        10,
        "nothing removed"
    );
}

#[test]
fn a_cursor_changes_the_tree_exactly_as_paths_do() {
    let base = commit(&Snapshot::empty(), 0, |t| {
        for i in 0..100 {
            t.write(&p(&format!("/ops/d{i:03}/state")), Value::I64(i))
                .unwrap();
        }
        for i in 0..5 {
            t.append(&p("/ops/d042/log"), Value::I64(i)).unwrap();
        }
    });
    let by_paths = commit(&base, 1, |t| {
        t.write(&p("/ops/d042/state"), Value::text("moved"))
            .unwrap();
        let name = t.append(&p("/ops/d042/log"), Value::text("entry")).unwrap();
        t.write(
            &p("/ops/d042/log")
                .child(name)
                .child(Name::new("beat").unwrap()),
            Value::I64(1),
        )
        .unwrap();
        t.keep_newest(&p("/ops/d042/log"), 3).unwrap();
        t.write(&p("/ops/d077/new/deep"), Value::Bool(true))
            .unwrap();
    });
    let by_cursor = commit(&base, 1, |t| {
        let mut cell = t.cell_mut(&p("/ops/d042")).unwrap();
        cell.write(&Name::new("state").unwrap(), Value::text("moved"))
            .unwrap();
        let mut log = cell.child(&Name::new("log").unwrap()).unwrap();
        let mut entry = log.append_bounded(Value::text("entry"), 3).unwrap();
        entry
            .write(&Name::new("beat").unwrap(), Value::I64(1))
            .unwrap();
        let mut other = t.cell_mut(&p("/ops/d077")).unwrap();
        let mut new = other.child(&Name::new("new").unwrap()).unwrap();
        new.write(&Name::new("deep").unwrap(), Value::Bool(true))
            .unwrap();
    });
    assert_eq!(by_cursor.hash(), by_paths.hash());
    assert_eq!(by_cursor.hash(), by_cursor.recompute_hash());
    assert_eq!(
        by_cursor.children(&p("/ops/d042/log"))[0].as_str(),
        "0000000003"
    );
    assert_ne!(by_cursor.hash(), base.hash());
}

#[test]
fn existing_mut_finds_only_cells_that_exist_and_a_miss_changes_nothing() {
    let base = commit(&Snapshot::empty(), 0, |t| {
        for i in 0..100 {
            t.write(&p(&format!("/ops/d{i:03}/state")), Value::I64(i))
                .unwrap();
        }
    });
    let mut t = WorkTree::new(&base);
    assert!(t.existing_mut(&p("/ops/d100")).unwrap().is_none());
    assert!(t.existing_mut(&p("/nope/deeper")).unwrap().is_none());
    assert_eq!(t.commit(1).hash(), base.hash(), "a miss changes nothing");
    let after = commit(&base, 1, |t| {
        let mut cell = t.existing_mut(&p("/ops/d007")).unwrap().unwrap();
        cell.write(&Name::new("state").unwrap(), Value::I64(-7))
            .unwrap();
    });
    assert_eq!(after.read(&p("/ops/d007/state")), Some(&Value::I64(-7)));
    assert_eq!(after.hash(), after.recompute_hash());
}

#[test]
fn each_existing_child_visits_present_children_once_in_name_order() {
    // Short names and names of 16 bytes or more that share a sort key, in
    // a list long enough to have groups.
    let name = |i: i64| {
        if i % 2 == 0 {
            format!("d{i:03}")
        } else {
            format!("dossier-sixteen-b{i:03}")
        }
    };
    let base = commit(&Snapshot::empty(), 0, |t| {
        for i in 0..300 {
            t.write(&p(&format!("/ops/{}/state", name(i))), Value::I64(i))
                .unwrap();
        }
        t.write(&p("/ops/sealed/state"), Value::I64(-1)).unwrap();
        t.seal(&p("/ops/sealed")).unwrap();
    });
    // Every third one, backwards, each twice, with absent and sealed ones.
    let chosen: Vec<i64> = (0..300).rev().step_by(3).collect();
    let mut names: Vec<Name> = chosen
        .iter()
        .chain(&chosen)
        .map(|&i| Name::new(&name(i)).unwrap())
        .collect();
    for extra in ["d300", "sealed", "dossier-sixteen-b999", "a"] {
        names.push(Name::new(extra).unwrap());
    }
    let state = Name::new("state").unwrap();
    let mut t = WorkTree::new(&base);
    let mut list = t.existing_mut(&p("/ops")).unwrap().unwrap();
    let mut seen = Vec::new();
    let visited = list
        .each_existing_child(&names, &NameOrder::of(&names), &mut |mut cell| {
            let i = cell.node().child("state").unwrap().value().unwrap();
            let i = i.as_i64().unwrap();
            seen.push(name(i));
            cell.write(&state, Value::I64(1000 + i)).unwrap();
        })
        .unwrap();
    assert_eq!(visited, chosen.len());
    let mut expected: Vec<String> = chosen.iter().map(|&i| name(i)).collect();
    expected.sort();
    assert_eq!(seen, expected, "once each, in name order");
    let after = t.commit(1);
    let by_paths = commit(&base, 1, |t| {
        for &i in &chosen {
            t.write(&p(&format!("/ops/{}/state", name(i))), Value::I64(1000 + i))
                .unwrap();
        }
    });
    assert_eq!(after.hash(), by_paths.hash());
    assert_eq!(after.hash(), after.recompute_hash());
    assert!(
        after.read(&p("/ops/d300")).is_none(),
        "a miss creates nothing"
    );
    assert_eq!(after.read(&p("/ops/sealed/state")), Some(&Value::I64(-1)));
}

/// The walk hashes the children it visited as it goes (64 at a time):
/// a change below one of them later in the batch, a visit that leaves a
/// child as a bare leaf (hashed inline in its chunk) and one that changes
/// nothing must all come out as if the commit had hashed everything.
#[test]
fn children_hashed_by_the_walk_are_hashed_again_after_a_later_change() {
    let name = |i: i64| Name::new(&format!("c{i:03}")).unwrap();
    let base = commit(&Snapshot::empty(), 0, |t| {
        for i in 0..200 {
            t.write(&p(&format!("/ops/c{i:03}/state")), Value::I64(i))
                .unwrap();
        }
    });
    let names: Vec<Name> = (0..200).map(name).collect();
    let state = Name::new("state").unwrap();
    let mut t = WorkTree::new(&base);
    let mut list = t.existing_mut(&p("/ops")).unwrap().unwrap();
    list.each_existing_child(&names, &NameOrder::of(&names), &mut |mut cell| {
        let i = cell.node().child("state").unwrap().value().unwrap();
        match i.as_i64().unwrap() {
            // Left unchanged.
            i if i % 5 == 0 => {}
            // Made a bare leaf: its state removed, a value of its own.
            i if i % 7 == 0 => {
                cell.remove_child(&state).unwrap();
                cell.set_value(Value::I64(i));
            }
            i => cell.write(&state, Value::I64(1000 + i)).unwrap(),
        }
    })
    .unwrap();
    // After the walk: below children hashed early, in both of its halves.
    for i in [3, 130, 199] {
        t.write(&p(&format!("/ops/c{i:03}/later")), Value::Bool(true))
            .unwrap();
    }
    let after = t.commit(1);
    let by_paths = commit(&base, 1, |t| {
        for i in 0..200i64 {
            let cell = format!("/ops/c{i:03}");
            if i % 5 == 0 {
                continue;
            } else if i % 7 == 0 {
                t.delete(&p(&format!("{cell}/state"))).unwrap();
                t.write(&p(&cell), Value::I64(i)).unwrap();
            } else {
                t.write(&p(&format!("{cell}/state")), Value::I64(1000 + i))
                    .unwrap();
            }
        }
        for i in [3, 130, 199] {
            t.write(&p(&format!("/ops/c{i:03}/later")), Value::Bool(true))
                .unwrap();
        }
    });
    assert_eq!(after.hash(), by_paths.hash());
    assert_eq!(after.hash(), after.recompute_hash());
    assert_eq!(after.read(&p("/ops/c007")), Some(&Value::I64(7)));
    assert_eq!(after.read(&p("/ops/c130/later")), Some(&Value::Bool(true)));
}

#[test]
fn a_cursor_keeps_the_seal_rules() {
    let base = commit(&Snapshot::empty(), 0, |t| {
        t.write(&p("/d/env/verb"), Value::text("op/x")).unwrap();
        t.seal(&p("/d/env")).unwrap();
        t.append(&p("/d/log"), Value::I64(0)).unwrap();
        t.seal(&p("/d/log/0000000000")).unwrap();
    });
    let mut t = WorkTree::new(&base);
    assert!(matches!(
        t.cell_mut(&p("/d/env/verb")),
        Err(TreeError::Sealed { .. })
    ));
    let mut cell = t.cell_mut(&p("/d")).unwrap();
    let env = Name::new("env").unwrap();
    assert!(matches!(
        cell.write(&env, Value::I64(1)),
        Err(TreeError::Sealed { .. })
    ));
    let mut sealed = cell.child(&env).unwrap();
    assert!(matches!(
        sealed.write(&Name::new("verb").unwrap(), Value::I64(1)),
        Err(TreeError::Sealed { .. })
    ));
    let mut log = cell.child(&Name::new("log").unwrap()).unwrap();
    assert!(matches!(
        log.append_bounded(Value::I64(1), 1),
        Err(TreeError::HoldsSealed { .. })
    ));
    let after = t.commit(1);
    assert_eq!(after.hash(), base.hash(), "nothing changed");
    assert_eq!(after.children(&p("/d/log")).len(), 1);
}

fn apply_all(base: &Snapshot, changes: &[super::Change]) -> Snapshot {
    commit(base, base.beat() + 1, |t| {
        for c in changes {
            t.apply(c).unwrap();
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A diff applied to the old tree gives the new one (same hash, same
    /// cells, seals included); a diff from the empty tree rebuilds it whole.
    #[test]
    fn diff_applied_to_the_old_tree_gives_the_new_one(batches in prop::collection::vec(prop::collection::vec((tree_op(), any::<bool>()), 1..120), 1..5)) {
        let mut s = Snapshot::empty();
        for (beat, batch) in batches.into_iter().enumerate() {
            let old = s.clone();
            s = commit(&s, beat as u64, |t| {
                for (op, seal) in batch {
                    let _ = match op {
                        TreeOp::Write(a, b, v) => t.write(&p(&format!("/t/{a}/{b:03}")), Value::I64(v)),
                        TreeOp::Delete(a, b) => t.delete(&p(&format!("/t/{a}/{b:03}"))).map(drop),
                        TreeOp::DeleteParent(a) => t.delete(&p(&format!("/t/{a}"))).map(drop),
                        TreeOp::Append(a) => t.append(&p(&format!("/t/{a}")), Value::Null).map(drop),
                    };
                    if seal && beat % 2 == 1 {
                        let _ = t.seal(&p(&format!("/t/{}", v_of(&op))));
                    }
                }
            });
            let changes = super::diff(&old, &s);
            prop_assert_eq!(changes.is_empty(), old.hash() == s.hash());
            let rebuilt = apply_all(&old, &changes);
            prop_assert_eq!(rebuilt.hash(), s.hash());
            prop_assert_eq!(rebuilt.recompute_hash(), s.hash());
            prop_assert!(super::diff(&rebuilt, &s).is_empty());
            let whole = apply_all(&Snapshot::empty(), &super::diff(&Snapshot::empty(), &s));
            prop_assert_eq!(whole.hash(), s.hash());
            // Seals survive: a write under a rebuilt sealed cell is refused.
            if let Some(sealed) = (0..6).find(|a| s.node(&p(&format!("/t/{a}"))).is_some_and(|n| n.is_sealed())) {
                let mut t = WorkTree::new(&whole);
                let under = p(&format!("/t/{sealed}/x"));
                prop_assert!(t.write(&under, Value::Null).is_err());
                prop_assert!(t.delete(&p("/t")).is_err());
            }
        }
    }
}

fn v_of(op: &TreeOp) -> u8 {
    match op {
        TreeOp::Write(a, ..)
        | TreeOp::Delete(a, _)
        | TreeOp::DeleteParent(a)
        | TreeOp::Append(a) => *a,
    }
}

#[test]
fn diff_names_removed_subtrees_once_and_added_ones_cell_by_cell() {
    let a = commit(&Snapshot::empty(), 0, |t| {
        t.write(&p("/a/x"), Value::I64(1)).unwrap();
        t.write(&p("/b"), Value::I64(2)).unwrap();
    });
    let b = commit(&a, 1, |t| {
        t.delete(&p("/a")).unwrap();
        t.write(&p("/b"), Value::I64(3)).unwrap();
        t.write(&p("/c/y"), Value::text("new")).unwrap();
    });
    let changes = super::diff(&a, &b);
    assert_eq!(
        changes,
        vec![
            super::Change::Remove(p("/a")),
            super::Change::Put {
                path: p("/b"),
                value: Some(Value::I64(3)),
                sealed: false,
                log: None,
            },
            super::Change::Put {
                path: p("/c"),
                value: None,
                sealed: false,
                log: None,
            },
            super::Change::Put {
                path: p("/c/y"),
                value: Some(Value::text("new")),
                sealed: false,
                log: None,
            },
        ]
    );
}

/// The first `count` names `u<i>` that cut at no level (cut level 0).
fn uncut_names(count: usize) -> Vec<String> {
    (0u32..)
        .map(|i| format!("u{i}"))
        .filter(|name| super::hash::cut_level(name) == 0)
        .take(count)
        .collect()
}

/// Names of four families: index names (logs), short words, names that
/// never end a chunk (so chunks fill up to the cap and cuts cascade), and
/// names of 16 bytes or more that share their first 16 (a search's sort
/// key) with eight others or more, so searches must order them by name.
fn list_name(family: u8, n: u16) -> String {
    static UNCUT: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    match family % 4 {
        0 => format!("{n:010}"),
        1 => format!("k{n}"),
        2 => UNCUT.get_or_init(|| uncut_names(1024))[n as usize].clone(),
        _ if n < 8 => format!("{n:016}"),
        _ => format!("{:016}{n}", n % 8),
    }
}

#[derive(Debug, Clone)]
enum ListOp {
    Insert(u8, u16),
    Remove(u8, u16),
    Rewrite(u8, u16),
    Append,
    KeepNewest(u16),
    Subtree(u8, u16),
}

fn list_op() -> impl Strategy<Value = ListOp> {
    prop_oneof![
        6 => (0u8..4, 0u16..700).prop_map(|(f, n)| ListOp::Insert(f, n)),
        3 => (0u8..4, 0u16..700).prop_map(|(f, n)| ListOp::Remove(f, n)),
        2 => (0u8..4, 0u16..700).prop_map(|(f, n)| ListOp::Rewrite(f, n)),
        2 => Just(ListOp::Append),
        1 => (0u16..900).prop_map(ListOp::KeepNewest),
        1 => (0u8..4, 0u16..700).prop_map(|(f, n)| ListOp::Subtree(f, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Inserts, removes, front trims and rewrites of one wide list, batch
    /// after batch: the chunk tree stays cut as the format says (the
    /// incremental hash equals the one computed from scratch), it lists
    /// exactly the names a model holds, and older snapshots are untouched.
    #[test]
    fn a_wide_list_stays_canonical_through_any_changes(
        seed in prop::collection::vec((0u8..4, 0u16..700), 0..600),
        batches in prop::collection::vec(prop::collection::vec(list_op(), 1..80), 1..6),
    ) {
        let list = p("/w");
        let mut model = std::collections::BTreeMap::new();
        let mut touched = std::collections::BTreeSet::new();
        let mut s = commit(&Snapshot::empty(), 0, |t| {
            for (f, n) in &seed {
                let name = list_name(*f, *n);
                t.write(&list.child(Name::new(&name).unwrap()), Value::I64(*n as i64)).unwrap();
                model.insert(name, Value::I64(*n as i64));
            }
        });
        prop_assert_eq!(s.hash(), s.recompute_hash());
        for (beat, batch) in batches.into_iter().enumerate() {
            let old = s.clone();
            let old_hash = s.hash();
            s = commit(&s, beat as u64 + 1, |t| {
                for op in batch {
                    match op {
                        ListOp::Insert(f, n) | ListOp::Rewrite(f, n) => {
                            let name = list_name(f, n);
                            let value = Value::I64(beat as i64 * 1000 + n as i64);
                            t.write(&list.child(Name::new(&name).unwrap()), value.clone()).unwrap();
                            model.insert(name, value);
                        }
                        ListOp::Remove(f, n) => {
                            let name = list_name(f, n);
                            touched.insert(name.clone());
                            let existed = t.delete(&list.child(Name::new(&name).unwrap())).unwrap();
                            assert_eq!(existed, model.remove(&name).is_some());
                        }
                        ListOp::Append => {
                            let name = t.append(&list, Value::Bool(true)).unwrap();
                            model.insert(name.to_string(), Value::Bool(true));
                        }
                        ListOp::KeepNewest(keep) => {
                            t.keep_newest(&list, keep as usize).unwrap();
                            while model.len() > (keep as usize).max(1) {
                                model.pop_first();
                            }
                        }
                        ListOp::Subtree(f, n) => {
                            let name = list_name(f, n);
                            let deep = list.child(Name::new(&name).unwrap()).child(Name::new("x").unwrap());
                            t.write(&deep, Value::text("a value longer than thirty-two bytes, so hashed")).unwrap();
                            model.insert(name, Value::Null);
                        }
                    }
                    let live = t.node(&list).map_or(0, Node::child_count);
                    assert_eq!(live, model.len(), "child_count during the batch");
                }
            });
            prop_assert_eq!(s.hash(), s.recompute_hash(), "beat {}", beat);
            if let Some(node) = s.node(&list) {
                super::node::children::check_cached(&node.children);
            }
            prop_assert_eq!(old.hash(), old_hash);
            prop_assert_eq!(old.recompute_hash(), old_hash);
            let names: Vec<String> = s.children(&list).iter().map(|n| n.to_string()).collect();
            let expected: Vec<String> = model.keys().cloned().collect();
            prop_assert_eq!(names, expected);
            let node = s.node(&list);
            prop_assert_eq!(node.map_or(0, Node::child_count), model.len());
            for (name, value) in &model {
                let cell = node.and_then(|n| n.child(name));
                prop_assert!(cell.is_some(), "{} missing", name);
                if !matches!(value, Value::Null) {
                    prop_assert_eq!(cell.and_then(Node::value), Some(value));
                }
            }
            for name in touched.iter().filter(|name| !model.contains_key(*name)) {
                prop_assert!(node.and_then(|n| n.child(name)).is_none(), "{} found", name);
            }
            // A fresh tree with the same content is cut the same way.
            let fresh = commit(&Snapshot::empty(), 0, |t| {
                for (name, value) in &model {
                    let path = list.child(Name::new(name).unwrap());
                    if matches!(value, Value::Null) {
                        t.write(&path.child(Name::new("x").unwrap()), Value::text("a value longer than thirty-two bytes, so hashed")).unwrap();
                        let _ = t.clear_value(&path);
                    } else {
                        t.write(&path, value.clone()).unwrap();
                    }
                }
            });
            if let (Some(a), Some(b)) = (s.node(&list), fresh.node(&list)) {
                prop_assert_eq!(super::node::children::shape(&a.children), super::node::children::shape(&b.children));
            }
            let changes = super::diff(&old, &s);
            prop_assert_eq!(apply_all(&old, &changes).hash(), s.hash());
        }
    }
}

#[test]
fn names_that_never_cut_fill_nodes_to_the_cap_and_cuts_cascade_correctly() {
    let names = uncut_names(64 * 64 + 300);
    let shape_of = |s: &Snapshot| super::node::children::shape(&s.node(&p("/w")).unwrap().children);
    let s = commit(&Snapshot::empty(), 0, |t| {
        for name in &names[..300] {
            t.write(&p(&format!("/w/{name}")), Value::I64(1)).unwrap();
        }
    });
    assert_eq!(s.hash(), s.recompute_hash());
    let chunks: Vec<usize> = shape_of(&s)
        .iter()
        .filter(|(l, _)| *l == 0)
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(chunks, vec![64, 64, 64, 64, 44]);
    // 4,396 names: level-1 groups fill to 64 chunks as well.
    let mut s = commit(&s, 1, |t| {
        for name in &names[300..] {
            t.write(&p(&format!("/w/{name}")), Value::I64(1)).unwrap();
        }
    });
    assert_eq!(s.hash(), s.recompute_hash());
    assert!(shape_of(&s).contains(&(1, 64)), "{:?}", &shape_of(&s)[..3]);
    // A name inserted at the front shifts every cap cut after it; one
    // removed does the same backwards.
    for (beat, name) in [
        (2, "!first"),
        (3, names[17].as_str()),
        (4, names[4000].as_str()),
    ] {
        s = commit(&s, beat, |t| {
            if name.starts_with('!') {
                t.write(&p(&format!("/w/{name}")), Value::I64(2)).unwrap();
            } else {
                t.delete(&p(&format!("/w/{name}"))).unwrap();
            }
        });
        assert_eq!(s.hash(), s.recompute_hash(), "beat {beat}");
        let fresh = commit(&Snapshot::empty(), 0, |t| {
            for name in s.children(&p("/w")) {
                let path = p("/w").child(name);
                let value = s.read(&path).cloned().unwrap();
                t.write(&path, value).unwrap();
            }
        });
        assert_eq!(shape_of(&s), shape_of(&fresh), "beat {beat}");
    }
}

#[test]
fn one_change_in_a_wide_list_copies_a_chunk_and_one_node_per_level() {
    let names: Vec<String> = (0..20_000u16).map(|n| list_name(1, n)).collect();
    let s = commit(&Snapshot::empty(), 0, |t| {
        for name in &names {
            t.write(&p(&format!("/w/{name}")), Value::I64(1)).unwrap();
        }
    });
    let before = super::node::children::shape(&s.node(&p("/w")).unwrap().children);
    let height = before[0].0;
    assert!(
        (3..=6).contains(&height),
        "{height} levels for 20,000 names"
    );
    let chunks = before.iter().filter(|(l, _)| *l == 0).count();
    assert!(
        (1500..3500).contains(&chunks),
        "{chunks} chunks: about 8 entries each"
    );
    // Inserting a name changes one chunk's neighbourhood: every other node
    // of the new tree is shared with the old one.
    let s2 = commit(&s, 1, |t| {
        t.write(&p("/w/k10000a"), Value::I64(2)).unwrap();
    });
    assert_eq!(s2.hash(), s2.recompute_hash());
    let shared = super::node::children::shared_nodes(
        &s.node(&p("/w")).unwrap().children,
        &s2.node(&p("/w")).unwrap().children,
    );
    let total = super::node::children::shape(&s2.node(&p("/w")).unwrap().children).len();
    assert!(
        total - shared <= 2 * (height + 1),
        "{} new nodes of {total}",
        total - shared
    );
}

#[test]
fn removing_a_whole_chunk_leaves_the_list_cut_as_if_built_fresh() {
    // "c<i>" names: the first that ends a chunk, then two that do not.
    let cuts = |name: &String| super::hash::cut_level(name) > 0;
    let names: Vec<String> = (0..).map(|i| format!("c{i:03}")).take(200).collect();
    let cut = names.iter().find(|n| cuts(n)).unwrap().clone();
    let after: Vec<String> = names
        .iter()
        .filter(|n| **n > cut && !cuts(n))
        .take(2)
        .cloned()
        .collect();
    let shape_of = |s: &Snapshot| super::node::children::shape(&s.node(&p("/l")).unwrap().children);
    let s = commit(&Snapshot::empty(), 0, |t| {
        for name in std::iter::once(&cut).chain(&after) {
            t.write(&p(&format!("/l/{name}")), Value::I64(1)).unwrap();
        }
    });
    assert_eq!(shape_of(&s), vec![(1, 2), (0, 1), (0, 2)]);
    // Emptying the second chunk leaves one chunk, which is then the root.
    let s = commit(&s, 1, |t| {
        for name in &after {
            t.delete(&p(&format!("/l/{name}"))).unwrap();
        }
    });
    assert_eq!(shape_of(&s), vec![(0, 1)]);
    assert_eq!(s.hash(), s.recompute_hash());
}

#[test]
fn many_inserts_in_any_order_in_one_batch_build_the_canonical_list() {
    // 30,000 names in a scrambled order under one parent, in one batch:
    // crowded open chunks split on the way, so this stays O(n log n).
    let mut order: Vec<u32> = (0..30_000).collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for i in (1..order.len()).rev() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        order.swap(i, (rng % (i as u64 + 1)) as usize);
    }
    let s = commit(&Snapshot::empty(), 0, |t| {
        for i in &order {
            t.write(&p(&format!("/w/n{i}")), Value::I64(*i as i64))
                .unwrap();
        }
        assert_eq!(t.node(&p("/w")).unwrap().child_count(), 30_000);
    });
    assert_eq!(s.hash(), s.recompute_hash());
    let sorted = commit(&Snapshot::empty(), 0, |t| {
        let mut names: Vec<String> = order.iter().map(|i| format!("n{i}")).collect();
        names.sort();
        for name in names {
            let i: i64 = name[1..].parse().unwrap();
            t.write(&p(&format!("/w/{name}")), Value::I64(i)).unwrap();
        }
    });
    assert_eq!(s.hash(), sorted.hash());
    // And removed again in the scrambled order, half of them.
    let s = commit(&s, 1, |t| {
        for i in order.iter().step_by(2) {
            assert!(t.delete(&p(&format!("/w/n{i}"))).unwrap());
        }
    });
    assert_eq!(s.hash(), s.recompute_hash());
    assert_eq!(s.node(&p("/w")).unwrap().child_count(), 15_000);
}

#[test]
fn a_removal_that_exposes_a_higher_cut_re_cuts_the_level_above() {
    // Sorted names "e<i>"; pick a name of cut level >= 2, followed directly
    // by one of cut level 1 (a chunk end): removing the latter makes the
    // former end its chunk, and its level says the group ends there too.
    let level = |i: u32| super::hash::cut_level(&format!("e{i:05}"));
    let high = (0..)
        .find(|&i| level(i) >= 2 && level(i + 1) == 1)
        .expect("such a pair exists");
    let names: Vec<String> = (0..high + 200).map(|i| format!("e{i:05}")).collect();
    let s = commit(&Snapshot::empty(), 0, |t| {
        for name in &names {
            t.write(&p(&format!("/l/{name}")), Value::I64(1)).unwrap();
        }
    });
    let s2 = commit(&s, 1, |t| {
        assert!(t.delete(&p(&format!("/l/e{:05}", high + 1))).unwrap());
    });
    assert_eq!(s2.hash(), s2.recompute_hash());
    super::node::children::check_cached(&s2.node(&p("/l")).unwrap().children);
}

#[test]
fn appends_and_front_trims_keep_every_cached_field_exact() {
    // A window of 40 index-named entries, one append and one trim per
    // commit, for 300 commits: the path a dossier's history takes.
    let mut s = commit(&Snapshot::empty(), 0, |t| {
        for i in 0..40 {
            t.append(&p("/log"), Value::I64(i)).unwrap();
        }
    });
    for beat in 1..300u64 {
        s = commit(&s, beat, |t| {
            let mut log = t.cell_mut(&p("/log")).unwrap();
            log.append_bounded(Value::I64(beat as i64), 40).unwrap();
        });
        assert_eq!(s.hash(), s.recompute_hash(), "beat {beat}");
        let log = s.node(&p("/log")).unwrap();
        super::node::children::check_cached(&log.children);
        assert_eq!(log.child_count(), 40);
        assert_eq!(log.first_child_name().unwrap(), &Name::from_index(beat));
    }
}

/// A tree that touches every rule of the hash format: each value kind
/// (short and long text, empty and non-empty bytes, negative zero), a cell
/// with a value and children, sealed cells, index-named logs, and lists
/// wide enough to be cut into chunks and groups of several levels.
fn golden_tree() -> Snapshot {
    commit(&Snapshot::empty(), 7, |t| {
        let values = [
            ("null", Value::Null),
            ("yes", Value::Bool(true)),
            ("no", Value::Bool(false)),
            ("int", Value::I64(-42)),
            ("big", Value::I64(i64::MAX)),
            ("float", Value::F64(1.5)),
            ("negzero", Value::F64(-0.0)),
            ("short", Value::text("ist:yield")),
            ("long", Value::text("a text longer than twenty-three bytes")),
            ("empty", Value::Bytes(Vec::new().into())),
            ("bytes", Value::Bytes(vec![0, 1, 2, 255].into())),
        ];
        for (name, value) in values {
            t.write(&p(&format!("/data/kinds/{name}")), value).unwrap();
        }
        t.write(&p("/data/both"), Value::I64(1)).unwrap();
        t.write(&p("/data/both/child"), Value::I64(2)).unwrap();
        t.write(&p("/sys/sealed/a"), Value::text("x")).unwrap();
        t.seal(&p("/sys/sealed")).unwrap();
        for i in 0..40u64 {
            t.append(&p("/rt/log"), Value::I64(i as i64)).unwrap();
        }
        for i in 0..3_000u64 {
            let path = p(&format!("/data/wide/k{}", i * 7919 % 10_007));
            t.write(&path, Value::I64(i as i64)).unwrap();
        }
    })
}

/// The state hash is a format (docs/formats.md): these values were computed
/// by format v3 (the first two: v4 only added logs, so a tree without one
/// hashes as before) and v4, and must not change unless `FORMAT_VERSION`
/// does, with the journal refusing the older format. A change of layout,
/// batching or copy-on-write strategy that alters one of them is a bug.
#[test]
fn the_state_hash_of_a_fixed_tree_is_pinned_by_format_version() {
    assert_eq!(
        hash::FORMAT_VERSION,
        4,
        "a new format needs new pinned hashes"
    );
    let golden = golden_tree();
    assert_eq!(
        golden.hash_hex(),
        "e338a1e86a179875e839bf637e29966f8a36aae9cdd3363e25b18a869d0e7058",
        "the hash of the golden tree"
    );
    // The same tree after an incremental batch (inserts in the middle and
    // at the end of wide lists, a removal, a trimmed log, a rewrite).
    let edited = commit(&golden, 8, |t| {
        t.write(&p("/data/wide/k5000x"), Value::Null).unwrap();
        t.delete(&p("/data/wide/k7919")).unwrap();
        t.write(&p("/data/wide/k9999z"), Value::Bool(true)).unwrap();
        t.keep_newest(&p("/rt/log"), 16).unwrap();
        t.write(&p("/data/kinds/int"), Value::I64(43)).unwrap();
    });
    assert_eq!(edited.hash(), edited.recompute_hash());
    assert_eq!(
        edited.hash_hex(),
        "af244e168be009d4d07dd8af9dd964121d974d8c511c6c3ab4116a4378611ffb",
        "the hash after the batch"
    );
    // v4: a log of inline entries, one with a child and one with a long
    // value; then trimmed (its base moves), changed in place, appended to.
    let logged = commit(&golden, 8, |t| {
        let mut rt = t.cell_mut(&p("/rt")).unwrap();
        let mut chain = rt.log_child(&Name::new("chain").unwrap()).unwrap();
        for i in 0..20 {
            chain.append(Value::I64(i)).unwrap();
        }
        let mut with_child = chain.append(Value::text("ist:yield")).unwrap();
        with_child
            .write(&Name::new("code").unwrap(), Value::I64(3))
            .unwrap();
        chain
            .append(Value::text("a text longer than thirty-two bytes"))
            .unwrap();
    });
    assert_eq!(logged.hash(), logged.recompute_hash());
    assert_eq!(
        logged.hash_hex(),
        "9ad6513a921b9dd28b925abf1026947aad49ec1615e016ad1b676cd07483dd58",
        "the hash of the golden tree with a log"
    );
    let relogged = commit(&logged, 9, |t| {
        t.keep_newest(&p("/rt/chain"), 9).unwrap();
        t.write(&p("/rt/chain/0000000015"), Value::Bool(false))
            .unwrap();
        t.append(&p("/rt/chain"), Value::Null).unwrap();
    });
    assert_eq!(relogged.hash(), relogged.recompute_hash());
    assert_eq!(
        relogged.hash_hex(),
        "6c823b2e6a44ea85f68d775da4a2abd63812b72ad1b2b7c5aa2db5ebb6a146ac",
        "the hash of the log after a trim, a change and an append"
    );
}

/// A log's hash, built byte by byte from `docs/formats.md` ("Log cells")
/// with BLAKE3 alone: the base of a new log, one link per entry, the last
/// link as the children digest, the log flag in the cell's flags.
#[test]
fn a_log_hashes_as_the_format_says() {
    let key = |context: &str| blake3::derive_key(context, b"");
    let keyed = |context: &str, mut input: Vec<u8>| {
        input.resize(input.len().div_ceil(64) * 64, 0);
        *blake3::keyed_hash(&key(context), &input).as_bytes()
    };
    let base = keyed("cep.v4 log", Vec::new());
    // Two inline i64 entries: name_len, name, form 0, flags 0, tag 3, value.
    let mut link = base;
    for (name, value) in [("0000000000", 5i64), ("0000000001", -1)] {
        let mut input = link.to_vec();
        input.push(name.len() as u8);
        input.extend_from_slice(name.as_bytes());
        input.extend_from_slice(&[0, 0, 3]);
        input.extend_from_slice(&value.to_le_bytes());
        link = keyed("cep.v4 log", input);
    }
    // The log cell: flags 2 (log), no value (tag 0), 2 children, digest.
    let mut cell = vec![2, 0];
    cell.extend_from_slice(&2u64.to_le_bytes());
    cell.extend_from_slice(&link);
    let log_hash = keyed("cep.v3 cell", cell);
    // Its parent /d: one child "log", by hash (form 1); the root: "d".
    let chunk_of = |name: &str, hash: &[u8; 32]| {
        let mut input = vec![name.len() as u8];
        input.extend_from_slice(name.as_bytes());
        input.push(1);
        input.extend_from_slice(hash);
        keyed("cep.v3 chunk", input)
    };
    let cell_of = |digest: [u8; 32]| {
        let mut input = vec![0, 0];
        input.extend_from_slice(&1u64.to_le_bytes());
        input.extend_from_slice(&digest);
        keyed("cep.v3 cell", input)
    };
    let d = cell_of(chunk_of("log", &log_hash));
    let root = cell_of(chunk_of("d", &d));
    let s = commit(&Snapshot::empty(), 1, |t| {
        t.cell_mut(&p("/d"))
            .unwrap()
            .log_child(&Name::new("log").unwrap())
            .unwrap();
        t.write(&p("/d/log/0000000000"), Value::I64(5)).unwrap();
        t.write(&p("/d/log/0000000001"), Value::I64(-1)).unwrap();
    });
    assert_eq!(s.hash(), root);
}

/// Names from a small alphabet, so that many share long prefixes; one in
/// three starts with one of two 16-byte prefixes, so that many share their
/// sort key (random names of 16 bytes or more almost never do).
fn crowded_name() -> impl Strategy<Value = String> {
    let alphabet = || prop::sample::select(vec!['!', '0', '9', 'a', '~']);
    let any_length =
        prop::collection::vec(alphabet(), 1..40).prop_map(|chars| chars.into_iter().collect());
    let same_key = (
        prop::sample::select(vec!["0000000000000000", "aaaaaaaaaaaaaaa~"]),
        prop::collection::vec(alphabet(), 0..6),
    )
        .prop_map(|(prefix, rest)| prefix.chars().chain(rest).collect());
    prop_oneof![2 => any_length, 1 => same_key]
}

/// Sort keys are the first 16 bytes, big-endian, zero-padded: checked
/// byte by byte against that definition at every length a name can have.
#[test]
fn sort_keys_are_the_first_sixteen_bytes_zero_padded() {
    let source: Vec<u8> = (b'!'..=b'~').filter(|&b| b != b'/').collect();
    for n in 1..=64 {
        for shift in [0, 7, 31] {
            let bytes: Vec<u8> = source.iter().cycle().skip(shift).take(n).copied().collect();
            let name = std::str::from_utf8(&bytes).unwrap();
            let mut padded = [0u8; 16];
            let k = n.min(16);
            padded[..k].copy_from_slice(&bytes[..k]);
            let expected = u128::from_be_bytes(padded);
            assert_eq!(
                super::node::children::SortKey::of(name).wide(),
                expected,
                "{name:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A sort key orders two names as `str` does wherever keys differ, and
    /// names under 16 bytes are equal exactly when their keys are.
    #[test]
    fn sort_keys_order_names_as_str_does(a in crowded_name(), b in crowded_name()) {
        let (ka, kb) = (super::node::children::SortKey::of(&a), super::node::children::SortKey::of(&b));
        if ka.wide() != kb.wide() {
            prop_assert_eq!(ka.wide().cmp(&kb.wide()), a.cmp(&b));
        } else if a.len() < 16 || b.len() < 16 {
            prop_assert_eq!(&a, &b);
        } else {
            prop_assert_eq!(&a[..16], &b[..16]);
        }
    }

    /// Every name written is found, and no other, however many names share
    /// a sort key and whatever their lengths.
    #[test]
    fn searches_find_exactly_the_names_written(
        written in prop::collection::btree_set(crowded_name(), 1..300),
        probes in prop::collection::btree_set(crowded_name(), 0..100),
    ) {
        let list = p("/s");
        let s = commit(&Snapshot::empty(), 0, |t| {
            for name in &written {
                t.write(&list.child(Name::new(name).unwrap()), Value::Bool(true)).unwrap();
            }
        });
        let node = s.node(&list).unwrap();
        for name in written.iter().chain(&probes) {
            prop_assert_eq!(node.child(name).is_some(), written.contains(name), "{}", name);
        }
        // And in a batch, where chunks are open and searched by route.
        let mut t = WorkTree::new(&s);
        for name in &probes {
            let existed = t.delete(&list.child(Name::new(name).unwrap())).unwrap();
            prop_assert_eq!(existed, written.contains(name), "delete {}", name);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A batch taken apart at one cell finds its children there by sort key
    /// and, on a tie of long names, by name: whatever names share a key,
    /// every write lands on its own child, exactly as one by one (with
    /// `deeper`, one level further down, so that the batch also splits).
    #[test]
    fn write_all_finds_children_that_share_sort_keys(
        written in prop::collection::btree_set((0u8..4, 0u16..300), 1..300),
        probes in prop::collection::vec((0u8..4, 0u16..300), 2..120),
        deeper in any::<bool>(),
        refuse_helpers in any::<bool>(),
    ) {
        // Names of `list_name`'s families: many of 16 bytes or more share
        // their sort key.
        let written: Vec<String> = written.iter().map(|&(f, n)| list_name(f, n)).collect();
        let probes: Vec<String> = probes.iter().map(|&(f, n)| list_name(f, n)).collect();
        let list = p("/s");
        let at = |name: &str| {
            let child = list.child(Name::new(name).unwrap());
            if deeper { child.child(Name::new("x").unwrap()) } else { child }
        };
        let base = commit(&Snapshot::empty(), 0, |t| {
            for name in &written {
                t.write(&at(name), Value::I64(0)).unwrap();
            }
        });
        let paths: Vec<Path> = probes
            .iter()
            .cycle()
            .take(probes.len().max(WorkTree::SPLIT_WRITES_MIN))
            .map(|name| at(name))
            .collect();
        let mut one_by_one = WorkTree::new(&base);
        let expected: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(i, path)| one_by_one.write_noting(path, Value::I64(i as i64)))
            .collect();
        let mut all = WorkTree::new(&base);
        let batch: Vec<(&Path, Value)> = paths
            .iter()
            .enumerate()
            .map(|(i, path)| (path, Value::I64(i as i64)))
            .collect();
        // Whether or not a helper thread can be started.
        super::node::children::halves::REFUSE_HELPERS.with(|refuse| refuse.set(refuse_helpers));
        let results = all.write_all_above(batch, 0);
        super::node::children::halves::REFUSE_HELPERS.with(|refuse| refuse.set(false));
        prop_assert_eq!(&results, &expected);
        let (a, b) = (all.commit(1), one_by_one.commit(1));
        prop_assert_eq!(a.hash(), b.hash());
        prop_assert_eq!(a.hash(), a.recompute_hash());
    }
}

/// A path of a `write_all` batch: `/t/<a>/<b>` (sometimes a cell below
/// it), or, with `elsewhere`, a path outside `/t` (then the batch fans out
/// at the root).
fn batch_path(a: u8, b: u8, deeper: bool, elsewhere: bool) -> Path {
    match (elsewhere, deeper) {
        (true, _) => p(&format!("/u/{b:03}")),
        (false, true) => p(&format!("/t/{a}/{b:03}/x{}", b % 3)),
        (false, false) => p(&format!("/t/{a}/{b:03}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A batch written with `write_all` (its children looked up in one walk
    /// of their list, and split between two threads when large) leaves the
    /// same tree, with the same result for every write (including the
    /// refusals below sealed cells and whether a cell was changed before),
    /// as the same writes one by one.
    #[test]
    fn write_all_writes_as_one_by_one_does(
        split in any::<bool>(),
        refuse_helpers in any::<bool>(),
        seed in prop::collection::vec((0u8..4, 0u8..40), 0..120),
        seals in prop::collection::vec((0u8..5, prop::option::of(0u8..40)), 0..3),
        one_parent in prop::option::of(0u8..5),
        writes in prop::collection::vec((0u8..5, 0u8..60, prop::bool::weighted(0.2), prop::bool::weighted(0.05), any::<i64>()), 512..800),
    ) {
        let base = commit(&Snapshot::empty(), 0, |t| {
            for &(a, b) in &seed {
                t.write(&p(&format!("/t/{a}/{b:03}")), Value::I64(b.into())).unwrap();
            }
            for &(a, b) in &seals {
                let path = match b {
                    Some(b) => p(&format!("/t/{a}/{b:03}")),
                    None => p(&format!("/t/{a}")),
                };
                t.write(&path, Value::Null).ok();
                t.seal(&path).ok();
            }
        });
        // With `one_parent`, every write goes below `/t/<a>` (a split one
        // level lower, or none at a sealed or new parent).
        let paths: Vec<Path> = writes
            .iter()
            .map(|&(a, b, deeper, elsewhere, _)| match one_parent {
                // Two levels below the parent (or nothing splits).
                Some(a) => batch_path(a, b, true, false),
                None => batch_path(a, b, deeper, elsewhere),
            })
            .collect();
        let values = writes.iter().map(|w| Value::I64(w.4));

        let mut one_by_one = WorkTree::new(&base);
        let expected: Vec<_> = paths
            .iter()
            .zip(values.clone())
            .map(|(path, value)| one_by_one.write_noting(path, value))
            .collect();
        let mut all = WorkTree::new(&base);
        let batch: Vec<(&Path, Value)> = paths.iter().zip(values).collect();
        // Split however small the tree (`write_all` leaves trees under 64k
        // cells to one thread), or never.
        let cells_min = if split { 0 } else { usize::MAX };
        let batch_paths: Vec<&Path> = paths.iter().collect();
        let fan = all.fan_out(&batch_paths, cells_min);
        // Nothing is sealed at or above /t, so every such batch is taken
        // apart; below /t/<a>, all but those of a sealed parent are.
        let parent_sealed = |a: u8| seals.iter().any(|&(s, b)| s == a && b.is_none());
        match one_parent {
            None => prop_assert!(fan.is_some()),
            Some(a) => prop_assert_eq!(fan.is_some(), !parent_sealed(a)),
        }
        prop_assert!(fan.is_none_or(|fan| fan.split == split));
        // Whether or not a helper thread can be started.
        super::node::children::halves::REFUSE_HELPERS.with(|refuse| refuse.set(refuse_helpers));
        let results = all.write_all_above(batch, cells_min);
        super::node::children::halves::REFUSE_HELPERS.with(|refuse| refuse.set(false));
        prop_assert_eq!(&results, &expected);
        prop_assert_eq!(all.changes(), one_by_one.changes());
        let (a, b) = (all.commit(1), one_by_one.commit(1));
        prop_assert_eq!(a.hash(), b.hash());
        prop_assert_eq!(a.hash(), a.recompute_hash());
        prop_assert_eq!(base.hash(), base.recompute_hash());
    }
}

/// A commit of [`WorkTree::WIDE_CHANGES_MIN`] changes or more walks and
/// hashes a long list in two halves on two threads: the hashes are those
/// of the same writes committed a thousand at a time (one thread), and of
/// the tree hashed from scratch, whether the list's cells are hashed in
/// their chunks or have hashes of their own.
#[test]
fn a_wide_commit_hashes_as_small_commits_do() {
    let n = 2 * WorkTree::WIDE_CHANGES_MIN + 2_000;
    let list = p("/w");
    let cells: Vec<Path> = (0..n as u64)
        .map(|i| list.child(Name::from_index(i)))
        .collect();
    let in_steps = |base: &Snapshot, writes: &[(Path, Value)]| {
        writes.chunks(1_000).fold(base.clone(), |snap, part| {
            commit(&snap, 1, |t| {
                for (path, value) in part {
                    t.write(path, value.clone()).unwrap();
                }
            })
        })
    };
    let at_once = |base: &Snapshot, writes: &[(Path, Value)]| {
        let mut tree = WorkTree::new(base);
        let batch: Vec<(&Path, Value)> = writes.iter().map(|(p, v)| (p, v.clone())).collect();
        assert!(tree.write_all(batch).iter().all(|r| r.is_ok()));
        tree.commit(1)
    };
    // Leaves hashed in their chunks.
    let leaves: Vec<(Path, Value)> = cells
        .iter()
        .enumerate()
        .map(|(i, path)| (path.clone(), Value::I64(i as i64)))
        .collect();
    let wide = at_once(&Snapshot::empty(), &leaves);
    let narrow = in_steps(&Snapshot::empty(), &leaves);
    assert_eq!(wide.hash(), narrow.hash());
    assert_eq!(wide.hash(), wide.recompute_hash());
    // Every other cell gets a child, so it has a hash of its own: the
    // stale entries are collected in two halves too.
    let below: Vec<(Path, Value)> = cells
        .iter()
        .step_by(2)
        .map(|path| (path.child(Name::new("x").unwrap()), Value::I64(7)))
        .collect();
    assert!(below.len() >= WorkTree::WIDE_CHANGES_MIN);
    let wide_below = at_once(&wide, &below);
    let narrow_below = in_steps(&narrow, &below);
    assert_eq!(wide_below.hash(), narrow_below.hash());
    assert_eq!(wide_below.hash(), wide_below.recompute_hash());
    assert_eq!(wide.hash(), wide.recompute_hash(), "the base is unchanged");

    // When no helper thread can be started, the same work runs on this
    // thread: the same hashes, nothing lost.
    super::node::children::halves::REFUSE_HELPERS.with(|refuse| refuse.set(true));
    let alone = at_once(&Snapshot::empty(), &leaves);
    let alone_below = at_once(&alone, &below);
    super::node::children::halves::REFUSE_HELPERS.with(|refuse| refuse.set(false));
    assert_eq!(alone.hash(), wide.hash());
    assert_eq!(alone_below.hash(), wide_below.hash());
}
