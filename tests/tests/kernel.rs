//! The kernel's acceptance behaviours (issue "Kernel: workspace, cell tree,
//! heartbeat, …"), each a test that fails when the behaviour is missing.

use cep_host::{
    cei, Config, EnzymeCx, EnzymeDescriptor, ExecutorKind, Impulse, Name, Outcome, Runtime,
    RuntimeError, Severity, Value, Word,
};
use cep_tests::{backends, facts, p, quiet_deliberate_panics, runtime, CallLog};

fn word(w: &str) -> Word {
    Word::new(w).unwrap()
}

fn name(n: &str) -> Name {
    Name::new(n).unwrap()
}

#[test]
fn an_impulse_emitted_in_beat_0_runs_once_in_beat_1_and_is_in_its_ledger() {
    let mut rt = runtime();
    let log = CallLog::default();
    rt.register(
        &EnzymeDescriptor::new("starter", "go"),
        |cx: &mut EnzymeCx<'_>| {
            cx.emit(Impulse::signal(p("ping")));
            Outcome::Ok
        },
    )
    .unwrap();
    rt.register(&EnzymeDescriptor::new("pong", "ping"), log.recorder("pong"))
        .unwrap();
    rt.inject(&word("test"), Impulse::signal(p("go"))).unwrap();

    rt.step().unwrap();
    assert!(
        log.entries().is_empty(),
        "nothing may run the emitted impulse in beat 0"
    );
    rt.step().unwrap();
    assert_eq!(log.entries(), vec![(1, "pong".to_owned())]);
    rt.run(3).unwrap();
    assert_eq!(log.entries().len(), 1, "it runs exactly once");

    let ledger = p("/rt/beat/1");
    let row = rt.read_at(&p("/rt/beat/1/impulses/0000000000"), 1).cloned();
    assert_eq!(row, Some(Value::text("/ping -> -")));
    assert_eq!(
        rt.snapshot().read(&ledger.child(name("agenda_count"))),
        Some(&Value::I64(1))
    );
    assert_eq!(
        rt.snapshot().read(&p("/rt/beat/1/agenda/0000000000")),
        Some(&Value::text("pong #0"))
    );
}

#[test]
fn an_injected_impulse_runs_in_the_next_beat_ordered_by_source_then_sequence() {
    let mut rt = runtime();
    let log = CallLog::default();
    let seen = log.clone();
    rt.register(
        &EnzymeDescriptor::new("rec", "in"),
        move |cx: &mut EnzymeCx<'_>| {
            let label = cx.payload().map(|v| v.to_string()).unwrap_or_default();
            seen.push(cx.beat(), &label);
            Outcome::Ok
        },
    )
    .unwrap();
    rt.step().unwrap();
    let injector = rt.injector();
    let handles: Vec<_> = ["zeta", "alpha"]
        .into_iter()
        .map(|source| {
            let injector = injector.clone();
            std::thread::spawn(move || {
                for i in 0..3 {
                    let payload = Value::from(format!("{source}{i}"));
                    injector
                        .inject(
                            &word(source),
                            Impulse::signal(p("in")).with_payload(payload),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    rt.step().unwrap();
    let labels: Vec<String> = log
        .labels()
        .into_iter()
        .map(|l| l.trim_matches('"').to_owned())
        .collect();
    assert_eq!(
        labels,
        ["alpha0", "alpha1", "alpha2", "zeta0", "zeta1", "zeta2"]
    );
    assert!(log.entries().iter().all(|(beat, _)| *beat == 1));
}

#[test]
fn emit_after_delays_by_the_given_number_of_beats() {
    let mut rt = runtime();
    let log = CallLog::default();
    rt.register(
        &EnzymeDescriptor::new("later", "go"),
        |cx: &mut EnzymeCx<'_>| {
            cx.emit_after(3, Impulse::signal(p("late")));
            Outcome::Ok
        },
    )
    .unwrap();
    rt.register(&EnzymeDescriptor::new("late", "late"), log.recorder("late"))
        .unwrap();
    rt.inject(&word("t"), Impulse::signal(p("go"))).unwrap();
    rt.run(8).unwrap();
    assert_eq!(log.entries(), vec![(4, "late".to_owned())]);
}

#[test]
fn before_and_after_order_runs_a_c_b_whatever_the_registration_order() {
    let orders = [
        ["A", "B", "C"],
        ["A", "C", "B"],
        ["B", "A", "C"],
        ["B", "C", "A"],
        ["C", "A", "B"],
        ["C", "B", "A"],
    ];
    for order in orders {
        let mut rt = runtime();
        let log = CallLog::default();
        for n in order {
            let d = match n {
                "A" => EnzymeDescriptor::new("A", "sig"),
                "B" => EnzymeDescriptor::new("B", "sig").after(&["A"]),
                _ => EnzymeDescriptor::new("C", "sig")
                    .before(&["B"])
                    .after(&["A"]),
            };
            rt.register(&d, log.recorder(n)).unwrap();
        }
        rt.inject(&word("t"), Impulse::signal(p("sig"))).unwrap();
        rt.step().unwrap();
        assert_eq!(log.labels(), ["A", "C", "B"], "registered as {order:?}");
    }
}

#[test]
fn an_ordering_cycle_is_refused_at_registration_naming_every_member() {
    let mut rt = runtime();
    rt.register(
        &EnzymeDescriptor::new("D", "sig").after(&["E"]),
        |_: &mut EnzymeCx<'_>| Outcome::Ok,
    )
    .unwrap();
    let err = rt
        .register(
            &EnzymeDescriptor::new("E", "sig").after(&["D"]),
            |_: &mut EnzymeCx<'_>| Outcome::Ok,
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cycle") && text.contains("\"E\"") && text.contains("D"),
        "{text}"
    );
    assert!(rt.registry().id("E").is_none());

    // A longer cycle names all three.
    rt.register(
        &EnzymeDescriptor::new("F", "sig").after(&["D"]),
        |_: &mut EnzymeCx<'_>| Outcome::Ok,
    )
    .unwrap();
    let err = rt
        .register(
            &EnzymeDescriptor::new("E", "sig")
                .after(&["F"])
                .before(&["D"]),
            |_: &mut EnzymeCx<'_>| Outcome::Ok,
        )
        .unwrap_err();
    let text = err.to_string();
    for member in ["D", "E", "F"] {
        assert!(text.contains(member), "{member} missing from {text}");
    }
}

fn run_once_and_log(setup: impl FnOnce(&mut Runtime, &CallLog), impulse: Impulse) -> Vec<String> {
    let mut rt = runtime();
    let log = CallLog::default();
    setup(&mut rt, &log);
    rt.inject(&word("t"), impulse).unwrap();
    rt.step().unwrap();
    log.labels()
}

#[test]
fn ties_break_exact_before_prefix() {
    let labels = run_once_and_log(
        |rt, log| {
            rt.register(
                &EnzymeDescriptor::new("a_prefix", "x").prefix(),
                log.recorder("prefix"),
            )
            .unwrap();
            rt.register(
                &EnzymeDescriptor::new("b_exact", "x/y"),
                log.recorder("exact"),
            )
            .unwrap();
            rt.register(
                &EnzymeDescriptor::new("c_prefix_same", "x/y").prefix(),
                log.recorder("prefix-same"),
            )
            .unwrap();
        },
        Impulse::signal(p("x/y")),
    );
    // x/y exact and x/y prefix are equally specific: exact first.
    assert_eq!(labels, ["exact", "prefix-same", "prefix"]);
}

#[test]
fn ties_break_literal_before_wildcard() {
    let labels = run_once_and_log(
        |rt, log| {
            rt.register(&EnzymeDescriptor::new("a_any", "x/**"), log.recorder("any"))
                .unwrap();
            rt.register(&EnzymeDescriptor::new("b_one", "x/*"), log.recorder("one"))
                .unwrap();
            rt.register(
                &EnzymeDescriptor::new("c_literal", "x/y"),
                log.recorder("literal"),
            )
            .unwrap();
        },
        Impulse::signal(p("x/y")),
    );
    assert_eq!(labels, ["literal", "one", "any"]);
}

#[test]
fn ties_break_target_and_signal_before_signal_only_then_name() {
    let labels = run_once_and_log(
        |rt, log| {
            // Free enzymes (bound nowhere) join by signal alone.
            rt.register(
                &EnzymeDescriptor::new("a_free", "s"),
                log.recorder("a_free"),
            )
            .unwrap();
            rt.register(
                &EnzymeDescriptor::new("b_free", "s"),
                log.recorder("b_free"),
            )
            .unwrap();
            rt.register(
                &EnzymeDescriptor::new("z_bound", "s"),
                log.recorder("z_bound"),
            )
            .unwrap();
            rt.register(
                &EnzymeDescriptor::new("y_bound", "s"),
                log.recorder("y_bound"),
            )
            .unwrap();
            rt.bind(&p("/data/t"), &name("z_bound"), false);
            rt.bind(&p("/data/t"), &name("y_bound"), false);
        },
        Impulse::targeted(p("s"), p("/data/t")),
    );
    assert_eq!(labels, ["y_bound", "z_bound", "a_free", "b_free"]);
}

#[test]
fn ties_break_by_name_not_registration_order() {
    let labels = run_once_and_log(
        |rt, log| {
            rt.register(&EnzymeDescriptor::new("zz", "s"), log.recorder("zz"))
                .unwrap();
            rt.register(&EnzymeDescriptor::new("aa", "s"), log.recorder("aa"))
                .unwrap();
            rt.register(&EnzymeDescriptor::new("mm", "s"), log.recorder("mm"))
                .unwrap();
        },
        Impulse::signal(p("s")),
    );
    assert_eq!(labels, ["aa", "mm", "zz"]);
}

#[test]
fn a_propagating_binding_on_a_parent_fires_for_a_child() {
    let labels = run_once_and_log(
        |rt, log| {
            rt.register(
                &EnzymeDescriptor::new("parental", "s"),
                log.recorder("parental"),
            )
            .unwrap();
            rt.register(&EnzymeDescriptor::new("local", "s"), log.recorder("local"))
                .unwrap();
            rt.bind(&p("/data/parent"), &name("parental"), true);
            rt.bind(&p("/data/parent"), &name("local"), false);
        },
        Impulse::targeted(p("s"), p("/data/parent/child")),
    );
    assert_eq!(
        labels,
        ["parental"],
        "a non-propagating binding stays on its cell"
    );
}

#[test]
fn root_mid_and_leaf_bindings_give_three_calls_and_a_tombstone_masks_the_inherited_one() {
    let mut rt = runtime();
    let log = CallLog::default();
    for n in ["at_root", "at_mid", "at_leaf"] {
        rt.register(&EnzymeDescriptor::new(n, "s"), log.recorder(n))
            .unwrap();
    }
    rt.bind(&p("/"), &name("at_root"), true);
    rt.bind(&p("/data/mid"), &name("at_mid"), true);
    rt.bind(&p("/data/mid/leaf"), &name("at_leaf"), false);
    let leaf = p("/data/mid/leaf");
    rt.inject(&word("t"), Impulse::targeted(p("s"), leaf.clone()))
        .unwrap();
    rt.step().unwrap();
    assert_eq!(log.labels().len(), 3);

    log.clear();
    rt.unbind(&leaf, &name("at_mid"));
    rt.inject(&word("t"), Impulse::targeted(p("s"), leaf.clone()))
        .unwrap();
    rt.step().unwrap();
    let mut labels = log.labels();
    labels.sort();
    assert_eq!(
        labels,
        ["at_leaf", "at_root"],
        "the tombstone masks the inherited at_mid"
    );

    // The tombstone also masks it below the leaf, but not beside it.
    log.clear();
    rt.inject(
        &word("t"),
        Impulse::targeted(p("s"), p("/data/mid/leaf/deeper")),
    )
    .unwrap();
    rt.inject(&word("t"), Impulse::targeted(p("s"), p("/data/mid/other")))
        .unwrap();
    rt.step().unwrap();
    let mut labels = log.labels();
    labels.sort();
    assert_eq!(labels, ["at_mid", "at_root", "at_root"]);
}

#[test]
fn a_bound_enzyme_whose_signal_does_not_match_gets_no_call() {
    let labels = run_once_and_log(
        |rt, log| {
            rt.register(
                &EnzymeDescriptor::new("other", "other/signal"),
                log.recorder("other"),
            )
            .unwrap();
            rt.bind(&p("/data/x"), &name("other"), true);
        },
        Impulse::targeted(p("s"), p("/data/x")),
    );
    assert!(labels.is_empty(), "{labels:?}");
}

#[test]
fn a_target_without_bindings_is_broadcast() {
    let labels = run_once_and_log(
        |rt, log| {
            rt.register(&EnzymeDescriptor::new("b1", "s"), log.recorder("b1"))
                .unwrap();
            rt.register(&EnzymeDescriptor::new("b2", "s"), log.recorder("b2"))
                .unwrap();
            rt.bind(&p("/data/elsewhere"), &name("b2"), true);
        },
        Impulse::targeted(p("s"), p("/data/unbound")),
    );
    assert_eq!(labels, ["b1", "b2"]);
}

#[test]
fn an_enzyme_that_retries_once_runs_in_n_and_n_plus_1() {
    let mut rt = runtime();
    let log = CallLog::default();
    let seen = log.clone();
    rt.register(
        &EnzymeDescriptor::new("flaky", "s"),
        move |cx: &mut EnzymeCx<'_>| {
            seen.push(cx.beat(), "flaky");
            cx.write(&p("/data/flaky"), cx.beat() as i64).unwrap();
            if seen.labels().len() == 1 {
                Outcome::Retry
            } else {
                Outcome::Ok
            }
        },
    )
    .unwrap();
    rt.register(
        &EnzymeDescriptor::new("steady", "s"),
        log.recorder("steady"),
    )
    .unwrap();
    rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
    rt.run(4).unwrap();
    assert_eq!(
        log.entries(),
        vec![
            (0, "flaky".into()),
            (0, "steady".into()),
            (1, "flaky".into())
        ],
        "only the retrying enzyme runs again"
    );
    assert_eq!(
        rt.snapshot().read(&p("/data/flaky")),
        Some(&Value::I64(1)),
        "the retried call's write was dropped"
    );
}

#[test]
fn an_enzyme_that_always_retries_stops_at_the_limit_with_a_fact() {
    let config = Config {
        retry_max: 3,
        ..Config::default()
    };
    let mut rt = Runtime::new(config).unwrap();
    let log = CallLog::default();
    let seen = log.clone();
    rt.register(
        &EnzymeDescriptor::new("stubborn", "s"),
        move |cx: &mut EnzymeCx<'_>| {
            seen.push(cx.beat(), "stubborn");
            Outcome::Retry
        },
    )
    .unwrap();
    rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
    rt.run(10).unwrap();
    let beats: Vec<u64> = log.entries().into_iter().map(|(b, _)| b).collect();
    assert_eq!(beats, [0, 1, 2, 3], "the first call plus retry_max retries");
    let limit = facts(&rt, "enzyme:retry/limit");
    assert_eq!(limit.len(), 1);
    assert_eq!(limit[0].severity, Severity::Crit);
    assert_eq!(limit[0].origin, "stubborn");
}

#[test]
fn a_panicking_enzyme_records_a_crit_fact_drops_its_intents_and_the_host_goes_on() {
    quiet_deliberate_panics();
    for (label, config) in backends() {
        let mut rt = Runtime::new(config).unwrap();
        rt.register(
            &EnzymeDescriptor::new("boom", "s"),
            |cx: &mut EnzymeCx<'_>| {
                cx.write(&p("/data/boom"), 1).unwrap();
                cx.emit(Impulse::signal(p("never")));
                panic!("deliberate failure in beat {}", cx.beat());
            },
        )
        .unwrap();
        rt.register(
            &EnzymeDescriptor::new("fine", "s"),
            |cx: &mut EnzymeCx<'_>| {
                cx.write(&p("/data/fine"), cx.beat() as i64).unwrap();
                Outcome::Ok
            },
        )
        .unwrap();
        let never = CallLog::default();
        rt.register(
            &EnzymeDescriptor::new("never", "never"),
            never.recorder("never"),
        )
        .unwrap();
        rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
        rt.step().unwrap();
        assert_eq!(
            rt.snapshot().read(&p("/data/boom")),
            None,
            "{label}: intents of the failed call are dropped"
        );
        assert_eq!(
            rt.snapshot().read(&p("/data/fine")),
            Some(&Value::I64(0)),
            "{label}"
        );
        let fatal = facts(&rt, "enzyme:fatal");
        assert_eq!(fatal.len(), 1, "{label}");
        assert_eq!(fatal[0].severity, Severity::Crit);
        assert_eq!(fatal[0].origin, "boom");
        assert!(
            fatal[0].note.contains("deliberate failure in beat 0"),
            "{}",
            fatal[0].note
        );
        rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
        rt.step().unwrap();
        assert_eq!(
            rt.snapshot().read(&p("/data/fine")),
            Some(&Value::I64(1)),
            "{label}: the next beat runs"
        );
        assert!(
            never.entries().is_empty(),
            "{label}: the failed call's emission is dropped"
        );
    }
}

#[test]
fn a_fatal_outcome_stops_the_runtime_only_when_configured() {
    let config = Config {
        stop_on_fatal: true,
        ..Config::default()
    };
    let mut rt = Runtime::new(config).unwrap();
    rt.register(
        &EnzymeDescriptor::new("bad", "s"),
        |_: &mut EnzymeCx<'_>| Outcome::Fatal("no disk".into()),
    )
    .unwrap();
    rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
    rt.step().unwrap();
    let err = rt.step().unwrap_err();
    assert!(
        matches!(err, RuntimeError::Halted { beat: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no disk"));
}

#[test]
fn two_writers_of_one_cell_the_later_wins_and_a_conflict_fact_names_both() {
    for (label, config) in backends() {
        let mut rt = Runtime::new(config).unwrap();
        rt.register(
            &EnzymeDescriptor::new("first", "s"),
            |cx: &mut EnzymeCx<'_>| {
                cx.write(&p("/data/shared"), "first").unwrap();
                Outcome::Ok
            },
        )
        .unwrap();
        rt.register(
            &EnzymeDescriptor::new("second", "s").after(&["first"]),
            |cx: &mut EnzymeCx<'_>| {
                cx.write(&p("/data/shared"), "second").unwrap();
                Outcome::Ok
            },
        )
        .unwrap();
        rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
        rt.step().unwrap();
        assert_eq!(
            rt.snapshot().read(&p("/data/shared")),
            Some(&Value::text("second")),
            "{label}"
        );
        let conflicts = facts(&rt, "cell:conflict");
        assert_eq!(conflicts.len(), 1, "{label}");
        assert_eq!(conflicts[0].severity, Severity::Warn);
        assert!(
            conflicts[0].note.contains("first") && conflicts[0].note.contains("second"),
            "{}",
            conflicts[0].note
        );
        assert_eq!(conflicts[0].subject, Some(p("/data/shared")));
    }
}

#[test]
fn a_conflict_is_named_whatever_came_between_and_deletes_conflict_too() {
    // The first writer changes 200 existing cells, then the second one of
    // them, and cells the first created or deleted: every meeting is named.
    let genesis = {
        let mut t = cep_host::cell::WorkTree::new(&cep_host::Snapshot::empty());
        for i in 0..200 {
            t.write(&p(&format!("/data/many/c{i}")), Value::I64(0))
                .unwrap();
        }
        t.write(&p("/data/gone"), Value::I64(0)).unwrap();
        t.commit(0)
    };
    for (label, config) in backends() {
        let mut rt = Runtime::with_genesis(config, genesis.clone()).unwrap();
        rt.register(
            &EnzymeDescriptor::new("first", "s"),
            |cx: &mut EnzymeCx<'_>| {
                for i in 0..200 {
                    cx.write(&p(&format!("/data/many/c{i}")), 1).unwrap();
                }
                cx.write(&p("/data/fresh"), 1).unwrap();
                cx.delete(&p("/data/gone")).unwrap();
                Outcome::Ok
            },
        )
        .unwrap();
        rt.register(
            &EnzymeDescriptor::new("second", "s").after(&["first"]),
            |cx: &mut EnzymeCx<'_>| {
                for path in ["/data/many/c117", "/data/fresh", "/data/gone"] {
                    cx.write(&p(path), 2).unwrap();
                }
                Outcome::Ok
            },
        )
        .unwrap();
        rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
        rt.step().unwrap();
        assert_eq!(
            fact_subjects(&rt, "cell:conflict"),
            ["/data/fresh", "/data/gone", "/data/many/c117"],
            "{label}"
        );
        assert_eq!(rt.snapshot().read(&p("/data/gone")), Some(&Value::I64(2)));
    }
}

/// The subjects of the facts on `topic`, sorted.
fn fact_subjects(rt: &Runtime, topic: &str) -> Vec<String> {
    let mut subjects: Vec<String> = facts(rt, topic)
        .iter()
        .map(|f| f.subject.as_ref().unwrap().to_string())
        .collect();
    subjects.sort();
    subjects
}

#[test]
fn a_large_beat_of_writes_names_conflicts_and_refusals_as_a_small_one_does() {
    // Over `WorkTree::SPLIT_WRITES_MIN` writes into a tree of over
    // `SPLIT_CELLS_MIN` cells, and nothing else that changes the tree: the
    // commit writes them in one batch split between two threads, and must
    // still name every meeting and every refusal.
    large_beat_of_writes(cep_host::cell::WorkTree::SPLIT_CELLS_MIN + 1000);
}

#[test]
fn a_large_beat_of_writes_into_a_small_tree_names_conflicts_and_refusals() {
    // The same beat into a tree too small to split: the commit writes it in
    // one batch on its own thread, each child of `/data/many` found in one
    // walk of its list.
    large_beat_of_writes(2000);
}

fn large_beat_of_writes(cells: usize) {
    use cep_host::cell::WorkTree;
    let genesis = {
        let mut t = WorkTree::new(&cep_host::Snapshot::empty());
        for i in 0..cells {
            t.write(&p(&format!("/data/many/c{i}")), Value::I64(0))
                .unwrap();
        }
        t.write(&p("/data/locked"), Value::I64(0)).unwrap();
        t.seal(&p("/data/locked")).unwrap();
        t.commit(0)
    };
    const { assert!(650 > WorkTree::SPLIT_WRITES_MIN) };
    let written: Vec<cep_host::Path> = (0..600)
        .map(|i| p(&format!("/data/many/c{i}")))
        .chain((0..50).map(|i| p(&format!("/data/new/n{i}"))))
        .collect();
    let written: Vec<&cep_host::Path> = written.iter().collect();
    assert!(
        WorkTree::new(&genesis).may_batch(&written, written.len() + 4),
        "the commit takes the beat as one batch"
    );
    let mut hashes = Vec::new();
    for (label, config) in backends() {
        let mut rt = Runtime::with_genesis(config, genesis.clone()).unwrap();
        rt.register(
            &EnzymeDescriptor::new("first", "s"),
            |cx: &mut EnzymeCx<'_>| {
                for i in 0..600 {
                    cx.write(&p(&format!("/data/many/c{i}")), 1).unwrap();
                }
                for i in 0..50 {
                    cx.write(&p(&format!("/data/new/n{i}")), 1).unwrap();
                }
                cx.write(&p("/data/locked/x"), 1).unwrap();
                Outcome::Ok
            },
        )
        .unwrap();
        rt.register(
            &EnzymeDescriptor::new("second", "s").after(&["first"]),
            |cx: &mut EnzymeCx<'_>| {
                for path in ["/data/many/c117", "/data/new/n3", "/data/locked"] {
                    cx.write(&p(path), 2).unwrap();
                }
                Outcome::Ok
            },
        )
        .unwrap();
        rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
        rt.step().unwrap();
        let subjects = |topic: &str| fact_subjects(&rt, topic);
        assert_eq!(
            subjects("cell:conflict"),
            ["/data/many/c117", "/data/new/n3"],
            "{label}"
        );
        assert_eq!(
            subjects("cell:sealed"),
            ["/data/locked", "/data/locked/x"],
            "{label}"
        );
        let read = |path: &str| rt.snapshot().read(&p(path)).cloned();
        assert_eq!(read("/data/many/c117"), Some(Value::I64(2)), "{label}");
        assert_eq!(read("/data/many/c599"), Some(Value::I64(1)), "{label}");
        assert_eq!(read("/data/new/n3"), Some(Value::I64(2)), "{label}");
        assert_eq!(read("/data/new/n49"), Some(Value::I64(1)), "{label}");
        assert_eq!(read("/data/locked"), Some(Value::I64(0)), "{label}");
        assert_eq!(read("/data/locked/x"), None, "{label}");
        // The cached hashes were brought up to date along both halves.
        assert_eq!(
            rt.snapshot().hash(),
            rt.snapshot().recompute_hash(),
            "{label}"
        );
        hashes.push(rt.snapshot().hash());
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
}

#[test]
fn enzymes_read_the_previous_snapshot_never_each_others_intents() {
    let mut rt = runtime();
    rt.register(
        &EnzymeDescriptor::new("writer", "s"),
        |cx: &mut EnzymeCx<'_>| {
            cx.write(&p("/data/v"), cx.beat() as i64 + 100).unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
    rt.register(
        &EnzymeDescriptor::new("reader", "s").after(&["writer"]),
        |cx: &mut EnzymeCx<'_>| {
            let seen = cx.read(&p("/data/v")).cloned().unwrap_or(Value::Null);
            cx.write(&p("/data/seen"), seen).unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
    for _ in 0..2 {
        rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
        rt.step().unwrap();
    }
    assert_eq!(rt.read_at(&p("/data/seen"), 0), Some(&Value::Null));
    assert_eq!(rt.read_at(&p("/data/seen"), 1), Some(&Value::I64(100)));
}

#[test]
fn a_write_outside_the_declared_scope_is_refused_with_a_usage_fact() {
    let mut rt = runtime();
    rt.register(
        &EnzymeDescriptor::new("scoped", "s").writes(&["/data/mine"]),
        |cx: &mut EnzymeCx<'_>| {
            cx.write(&p("/data/mine/ok"), 1).unwrap();
            let refused = cx.write(&p("/data/theirs"), 1);
            assert!(refused.is_err());
            Outcome::Ok
        },
    )
    .unwrap();
    rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
    rt.step().unwrap();
    assert_eq!(
        rt.snapshot().read(&p("/data/mine/ok")),
        Some(&Value::I64(1))
    );
    assert_eq!(rt.snapshot().read(&p("/data/theirs")), None);
    let usage = facts(&rt, "enzyme:scope");
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].severity, Severity::Usage);
    assert!(usage[0].note.contains("/data/theirs") && usage[0].note.contains("/data/mine"));
}

#[test]
fn a_registration_made_during_a_beat_takes_effect_at_the_next_beat() {
    let mut rt = runtime();
    let log = CallLog::default();
    let recorder = log.clone();
    rt.register(
        &EnzymeDescriptor::new("installer", "s"),
        move |cx: &mut EnzymeCx<'_>| {
            if cx.beat() == 0 {
                cx.register(
                    EnzymeDescriptor::new("newcomer", "s"),
                    std::sync::Arc::new(recorder.recorder("newcomer")),
                );
            }
            Outcome::Ok
        },
    )
    .unwrap();
    rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
    rt.step().unwrap();
    assert!(
        log.entries().is_empty(),
        "not in the beat that registered it"
    );
    rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
    rt.step().unwrap();
    assert_eq!(log.entries(), vec![(1, "newcomer".to_owned())]);
}

#[test]
fn cei_facts_emit_a_signal_for_the_next_beat() {
    let mut rt = runtime();
    let log = CallLog::default();
    rt.register(
        &EnzymeDescriptor::new("complainer", "s"),
        |cx: &mut EnzymeCx<'_>| {
            cx.cei(
                Severity::Warn,
                "test:topic",
                "something odd",
                Some(&p("/data/x")),
            );
            Outcome::Ok
        },
    )
    .unwrap();
    rt.register(
        &EnzymeDescriptor::new("watcher", "sig_cei/*"),
        log.recorder("watcher"),
    )
    .unwrap();
    rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
    rt.step().unwrap();
    let all = cei::facts(rt.snapshot());
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1, 0, "recorded with its beat");
    assert_eq!(all[0].0.origin, "complainer");
    rt.step().unwrap();
    assert_eq!(log.entries(), vec![(1, "watcher".to_owned())]);
}

#[test]
fn the_cei_mailbox_and_the_ledger_keep_only_their_retention_window() {
    let config = Config {
        cei_facts_max: 5,
        ledger_beats: 3,
        cei_signal: false,
        ..Config::default()
    };
    let mut rt = Runtime::new(config).unwrap();
    rt.register(
        &EnzymeDescriptor::new("chatty", "s"),
        |cx: &mut EnzymeCx<'_>| {
            cx.cei(
                Severity::Debug,
                "test:chat",
                &format!("beat {}", cx.beat()),
                None,
            );
            cx.emit(Impulse::signal(p("s")));
            Outcome::Ok
        },
    )
    .unwrap();
    rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
    rt.run(10).unwrap();
    let notes: Vec<String> = cei::facts(rt.snapshot())
        .into_iter()
        .map(|(f, _)| f.note)
        .collect();
    assert_eq!(notes, ["beat 5", "beat 6", "beat 7", "beat 8", "beat 9"]);
    let mut beats: Vec<String> = rt
        .snapshot()
        .children(&p("/rt/beat"))
        .iter()
        .map(|n| n.to_string())
        .collect();
    beats.sort();
    assert_eq!(beats, ["7", "8", "9"]);
}

#[test]
fn stateful_enzymes_run_in_agenda_order_on_every_backend() {
    for (label, config) in backends() {
        let mut rt = Runtime::new(config).unwrap();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = order.clone();
        rt.register(
            &EnzymeDescriptor::new("counter", "s").stateful(),
            move |cx: &mut EnzymeCx<'_>| {
                let i = cx.payload().and_then(Value::as_i64).unwrap_or(-1);
                seen.lock().unwrap().push(i);
                Outcome::Ok
            },
        )
        .unwrap();
        rt.register(
            &EnzymeDescriptor::new("busy", "s"),
            |cx: &mut EnzymeCx<'_>| {
                cx.write(&p("/data/busy"), 1).unwrap();
                Outcome::Ok
            },
        )
        .unwrap();
        for i in 0..500 {
            rt.inject(
                &word("t"),
                Impulse::signal(p("s")).with_payload(Value::I64(i)),
            )
            .unwrap();
        }
        rt.step().unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            (0..500).collect::<Vec<i64>>(),
            "{label}"
        );
    }
}

#[test]
fn the_threaded_executor_leaves_no_threads_behind() {
    fn thread_count() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .unwrap_or(0)
    }
    let before = thread_count();
    {
        let config = Config {
            executor: ExecutorKind::Threaded,
            workers: 8,
            ..Config::default()
        };
        let mut rt = Runtime::new(config).unwrap();
        rt.register(&EnzymeDescriptor::new("n", "s"), |_: &mut EnzymeCx<'_>| {
            Outcome::Ok
        })
        .unwrap();
        for _ in 0..200 {
            rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
        }
        rt.step().unwrap();
        // 7 helpers (the heartbeat thread is the eighth compute thread) and
        // the snapshot reclaimer.
        assert!(thread_count() >= before + 8);
    }
    // Other tests run in parallel threads of this process; allow for them but
    // require the helpers to be gone.
    let after = thread_count();
    assert!(after < before + 8, "threads before {before}, after {after}");
}

#[test]
fn facts_raised_while_handling_a_cei_signal_emit_no_further_signal() {
    let mut rt = runtime();
    let log = CallLog::default();
    let seen = log.clone();
    // Reacts to every fact by raising another: without the rule this would
    // run every beat forever.
    rt.register(
        &EnzymeDescriptor::new("echo", "sig_cei/*"),
        move |cx: &mut EnzymeCx<'_>| {
            seen.push(cx.beat(), "echo");
            cx.cei(Severity::Warn, "test:echo", "echo", None);
            Outcome::Ok
        },
    )
    .unwrap();
    rt.register(
        &EnzymeDescriptor::new("first", "s"),
        |cx: &mut EnzymeCx<'_>| {
            cx.cei(Severity::Warn, "test:first", "first", None);
            Outcome::Ok
        },
    )
    .unwrap();
    rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
    rt.run(6).unwrap();
    assert_eq!(log.entries(), vec![(1, "echo".to_owned())]);
    assert_eq!(
        facts(&rt, "test:echo").len(),
        1,
        "the echo's own fact is still recorded"
    );
}

#[test]
fn conflicts_beyond_the_per_beat_cap_are_summarised_in_one_fact() {
    let config = Config {
        conflict_facts_max: 2,
        cei_signal: false,
        ..Config::default()
    };
    let mut rt = Runtime::new(config).unwrap();
    for n in ["w1", "w2", "w3", "w4", "w5"] {
        rt.register(&EnzymeDescriptor::new(n, "s"), |cx: &mut EnzymeCx<'_>| {
            cx.write(&p("/data/hot"), cx.enzyme().to_string()).unwrap();
            Outcome::Ok
        })
        .unwrap();
    }
    rt.inject(&word("t"), Impulse::signal(p("s"))).unwrap();
    rt.step().unwrap();
    assert_eq!(
        rt.snapshot().read(&p("/data/hot")),
        Some(&Value::text("w5"))
    );
    let conflicts = facts(&rt, "cell:conflict");
    assert_eq!(conflicts.len(), 3, "{conflicts:?}");
    assert!(
        conflicts[2].note.contains("2 more same-cell conflicts"),
        "{}",
        conflicts[2].note
    );
}

#[test]
fn a_batch_injection_keeps_its_order_and_is_refused_whole_when_the_queue_is_full() {
    let config = Config {
        inject_queue_max: 4,
        ..Config::default()
    };
    let mut rt = Runtime::new(config).unwrap();
    let log = CallLog::default();
    let seen = log.clone();
    rt.register(
        &EnzymeDescriptor::new("rec", "s"),
        move |cx: &mut EnzymeCx<'_>| {
            seen.push(cx.beat(), &cx.payload().unwrap().to_string());
            Outcome::Ok
        },
    )
    .unwrap();
    let injector = rt.injector();
    let batch = |range: std::ops::Range<i64>| {
        range
            .map(|i| Impulse::signal(p("s")).with_payload(Value::I64(i)))
            .collect::<Vec<_>>()
    };
    assert_eq!(injector.inject_batch(&word("b"), batch(0..3)), Ok(0));
    let err = injector.inject_batch(&word("b"), batch(3..5)).unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(
        injector.pending(),
        3,
        "a refused batch leaves nothing behind"
    );
    rt.step().unwrap();
    assert_eq!(log.labels(), ["0", "1", "2"]);
    assert_eq!(
        injector.inject_batch(&word("b"), batch(3..5)),
        Ok(3),
        "sequence numbers continue"
    );
    rt.close_inputs();
    assert!(injector
        .inject(&word("b"), Impulse::signal(p("s")))
        .is_err());
}

#[test]
fn explicitly_numbered_injections_run_in_sequence_order_whatever_the_arrival_order() {
    let mut rt = runtime();
    let log = CallLog::default();
    let seen = log.clone();
    rt.register(
        &EnzymeDescriptor::new("rec", "s"),
        move |cx: &mut EnzymeCx<'_>| {
            seen.push(cx.beat(), &cx.payload().unwrap().to_string());
            Outcome::Ok
        },
    )
    .unwrap();
    let injector = rt.injector();
    for seq in [5u64, 1, 3, 2, 4] {
        let impulse = Impulse::signal(p("s")).with_payload(Value::I64(seq as i64));
        injector
            .inject_with_seq(&word("adc"), seq, impulse)
            .unwrap();
    }
    injector
        .inject(
            &word("adc"),
            Impulse::signal(p("s")).with_payload(Value::I64(6)),
        )
        .unwrap();
    rt.step().unwrap();
    assert_eq!(
        log.labels(),
        ["1", "2", "3", "4", "5", "6"],
        "numbering continues after the highest given"
    );
}
