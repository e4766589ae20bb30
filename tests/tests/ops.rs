//! OPS dossiers (issue "OPS dossiers, the episodic engine (E3) and the
//! executor backends", acceptance 1–4 and CEI escalation).

use cep_host::cei;
use cep_host::ops::{self, dossier};
use cep_host::{
    AwaitSpec, Config, EnzymeCx, EnzymeDescriptor, Impulse, Name, OpSpec, OpStatus, Outcome,
    Runtime, RuntimeError, Severity, Value, Word,
};
use cep_tests::{backends, facts, p, runtime, CallLog};

fn await_spec(want: &str, ttl_beats: u64, cont: &str) -> AwaitSpec {
    AwaitSpec {
        want: want.to_owned(),
        ttl_beats,
        cont: p(cont),
        payload: None,
        reply_to: None,
    }
}

fn watchers(rt: &Runtime, oid: &Name) -> Vec<Name> {
    rt.snapshot()
        .children(&dossier(oid).child(Name::new("watchers").unwrap()))
}

#[test]
fn an_await_on_a_state_set_later_runs_its_continuation_once_the_beat_after() {
    let mut rt = runtime();
    let log = CallLog::default();
    let seen = log.clone();
    rt.register(
        &EnzymeDescriptor::new("cont", "test/cont"),
        move |cx: &mut EnzymeCx<'_>| {
            seen.push(cx.beat(), &cx.target().unwrap().to_string());
            Outcome::Ok
        },
    )
    .unwrap();
    let oid = rt.op_start(OpSpec::new(p("op/test")));
    rt.step().unwrap();
    rt.op_await(&oid, await_spec("ist:done", 0, "test/cont"));
    rt.step().unwrap();
    let waiting = watchers(&rt, &oid);
    assert_eq!(waiting.len(), 1);
    let armed = dossier(&oid)
        .child(Name::new("watchers").unwrap())
        .child(waiting[0].clone())
        .child(Name::new("armed").unwrap());
    assert_eq!(rt.snapshot().read(&armed), Some(&Value::Bool(false)));

    rt.op_state(&oid, "ist:done");
    let report = rt.step().unwrap();
    assert!(
        log.entries().is_empty(),
        "the continuation runs the beat after the state changed"
    );
    assert!(rt.has_pending());
    assert!(watchers(&rt, &oid).is_empty(), "a fired watcher is removed");

    rt.run(3).unwrap();
    assert_eq!(
        log.entries(),
        vec![(report.beat + 1, dossier(&oid).to_string())],
        "exactly once, targeted at the dossier"
    );
}

#[test]
fn an_await_on_a_state_already_reached_fires_at_once() {
    let mut rt = runtime();
    let log = CallLog::default();
    rt.register(
        &EnzymeDescriptor::new("cont", "test/cont"),
        log.recorder("cont"),
    )
    .unwrap();
    let oid = rt.op_start(OpSpec::new(p("op/test")));
    rt.step().unwrap();
    rt.op_await(&oid, await_spec("ist:run", 0, "test/cont"));
    let report = rt.step().unwrap();
    rt.run(2).unwrap();
    assert_eq!(log.entries(), vec![(report.beat + 1, "cont".to_owned())]);
}

#[test]
fn an_await_with_ttl_1_at_beat_0_times_out_once_with_a_warning() {
    let mut rt = runtime();
    let log = CallLog::default();
    rt.register(&EnzymeDescriptor::new("tmo", "op/tmo"), log.recorder("tmo"))
        .unwrap();
    rt.register(
        &EnzymeDescriptor::new("cont", "test/cont"),
        log.recorder("cont"),
    )
    .unwrap();
    let oid = rt.op_start(OpSpec::new(p("op/test")));
    rt.op_await(&oid, await_spec("ist:never", 1, "test/cont"));
    rt.run(6).unwrap();
    assert_eq!(
        log.entries(),
        vec![(2, "tmo".to_owned())],
        "expired at the commit of beat 1, op/tmo ran at beat 2"
    );
    let warned = facts(&rt, "ops:await/timeout");
    assert_eq!(warned.len(), 1);
    assert_eq!(warned[0].severity, Severity::Warn);
    assert!(watchers(&rt, &oid).is_empty());
}

/// A dossier's history is a log cell (docs/formats.md, "Log cells"): it
/// keeps the newest `ops_history_max` entries and fewer than 8 more, the
/// newest last, its cached hash equal to the hash from scratch, and the
/// same state hash on every backend.
#[test]
fn a_dossier_history_is_a_log_window_with_the_same_hash_on_every_backend() {
    let mut hashes = Vec::new();
    for (backend, config) in backends() {
        let mut rt = Runtime::new(Config {
            ops_history_max: 12,
            ..config
        })
        .unwrap();
        let oid = rt.op_start(OpSpec::new(p("op/test")));
        for round in 0..60 {
            rt.op_state(&oid, &format!("ist:s{}", round % 3));
            rt.step().unwrap();
            let history = dossier(&oid).child(Name::new("history").unwrap());
            let node = rt.snapshot().node(&history).unwrap();
            assert!(node.is_log(), "{backend}: the history is a log");
            let kept = node.child_count();
            assert!(
                (12.min(round + 2)..12 + 8).contains(&kept),
                "{backend}: {kept} entries after {round} rounds"
            );
        }
        let states = ops::history(rt.snapshot(), &oid);
        assert_eq!(states.last().unwrap().0, "ist:s2", "{backend}: newest last");
        let snapshot = rt.snapshot();
        assert_eq!(snapshot.hash(), snapshot.recompute_hash(), "{backend}");
        hashes.push((backend, snapshot.hash()));
    }
    assert!(
        hashes.windows(2).all(|w| w[0].1 == w[1].1),
        "one state hash on every backend: {hashes:?}"
    );
}

/// The host's `op_state` calls of one beat are applied in dossier order
/// (for locality), which must not show: one dossier's calls keep their
/// order, and refusals are reported in call order.
#[test]
fn host_state_changes_apply_as_called_whatever_order_they_run_in() {
    let mut rt = runtime();
    let [a, b, c] = [(); 3].map(|_| rt.op_start(OpSpec::new(p("op/test"))));
    rt.step().unwrap();
    rt.op_close(&b, OpStatus::Ok, "done");
    rt.step().unwrap();
    let unknown = Name::new("9-h9").unwrap();
    rt.op_state(&c, "ist:x");
    rt.op_state(&a, "ist:y");
    rt.op_state(&unknown, "ist:z");
    rt.op_state(&b, "ist:z");
    rt.op_state(&a, "ist:w");
    rt.op_state(&c, "ist:v");
    rt.step().unwrap();
    let states = |oid: &Name| -> Vec<String> {
        ops::history(rt.snapshot(), oid)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    };
    assert_eq!(states(&a), ["ist:run", "ist:y", "ist:w"]);
    assert_eq!(states(&c), ["ist:run", "ist:x", "ist:v"]);
    assert_eq!(ops::state(rt.snapshot(), &a).as_deref(), Some("ist:w"));
    // Refusals in call order: the unknown operation, then the closed one.
    let refused: Vec<String> = cei::facts(rt.snapshot())
        .into_iter()
        .map(|(fact, _)| fact)
        .filter(|f| f.topic == "ops:unknown" || f.topic == "ops:closed")
        .map(|f| f.topic)
        .collect();
    assert_eq!(refused, ["ops:unknown", "ops:closed"]);
}

#[test]
fn history_collapses_same_beat_repeats_and_closed_operations_are_immutable() {
    let mut rt = runtime();
    let oid = rt.op_start(OpSpec::new(p("op/test")));
    rt.step().unwrap();
    rt.op_state(&oid, "ist:work");
    rt.op_state(&oid, "ist:work");
    rt.step().unwrap();
    rt.op_state(&oid, "ist:work");
    rt.step().unwrap();
    let states: Vec<String> = ops::history(rt.snapshot(), &oid)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        states,
        ["ist:run", "ist:work", "ist:work"],
        "same-beat repeats collapse, later beats do not"
    );

    rt.op_close(&oid, OpStatus::Ok, "done");
    rt.step().unwrap();
    assert_eq!(ops::state(rt.snapshot(), &oid).as_deref(), Some("ist:ok"));
    rt.op_state(&oid, "ist:work");
    rt.step().unwrap();
    assert_eq!(
        facts(&rt, "ops:closed").len(),
        1,
        "a state change after close is refused"
    );
    assert_eq!(ops::state(rt.snapshot(), &oid).as_deref(), Some("ist:ok"));
    rt.op_close(&oid, OpStatus::Ok, "again");
    rt.step().unwrap();
    assert!(
        facts(&rt, "ops:close/conflict").is_empty(),
        "closing again with the same status is accepted"
    );
    rt.op_close(&oid, OpStatus::Fail, "changed my mind");
    rt.step().unwrap();
    assert_eq!(
        facts(&rt, "ops:close/conflict").len(),
        1,
        "closing with another status is refused"
    );

    // envelope/ and close/ are sealed.
    let target = oid.clone();
    rt.register(
        &EnzymeDescriptor::new("vandal", "vandalise"),
        move |cx: &mut EnzymeCx<'_>| {
            for field in ["envelope/verb", "close/status"] {
                cx.write(&p(&format!("{}/{field}", dossier(&target))), "forged")
                    .unwrap();
            }
            Outcome::Ok
        },
    )
    .unwrap();
    rt.inject(&Word::new("t").unwrap(), Impulse::signal(p("vandalise")))
        .unwrap();
    rt.step().unwrap();
    assert_eq!(facts(&rt, "cell:sealed").len(), 2);
    assert_eq!(
        rt.snapshot()
            .read(&p(&format!("{}/envelope/verb", dossier(&oid)))),
        Some(&Value::text("/op/test"))
    );
    assert_eq!(
        rt.snapshot()
            .read(&p(&format!("{}/close/status", dossier(&oid)))),
        Some(&Value::text("sts:ok"))
    );
}

#[test]
fn boot_walks_its_states_to_ok_and_shutdown_walks_its_states_to_ok() {
    let mut rt = runtime();
    rt.run(6).unwrap();
    assert!(rt.booted());
    let boot = Name::new(cep_host::beat::BOOT_OID).unwrap();
    assert_eq!(
        rt.snapshot().read(&p("/sys/state/boot_oid")),
        Some(&Value::text("boot"))
    );
    let boot_history = ops::history(rt.snapshot(), &boot);
    let states: Vec<&str> = boot_history.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        states,
        [
            "ist:run",
            "ist:kernel",
            "ist:store",
            "ist:plugins",
            "ist:ok"
        ]
    );
    let beats: Vec<u64> = boot_history.iter().map(|(_, b)| *b).collect();
    assert_eq!(beats, [0, 1, 2, 3, 4], "one state per beat");
    assert_eq!(
        rt.snapshot().read(&p("/rt/ops/boot/close/status")),
        Some(&Value::text("sts:ok"))
    );

    rt.shutdown().unwrap();
    assert!(rt.is_down());
    let shdn = Name::new(cep_host::beat::SHUTDOWN_OID).unwrap();
    let states: Vec<String> = ops::history(rt.snapshot(), &shdn)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        states,
        ["ist:run", "ist:stop", "ist:flush", "ist:halt", "ist:ok"]
    );
    assert!(matches!(rt.step(), Err(RuntimeError::ShutDown { .. })));
    assert!(
        rt.inject(&Word::new("t").unwrap(), Impulse::signal(p("late")))
            .is_err(),
        "inputs close at shutdown"
    );
}

#[test]
fn a_crit_fact_about_an_operation_fails_it_and_a_fatal_fact_starts_shutdown() {
    let mut rt = runtime();
    let oid = rt.op_start(OpSpec::new(p("op/test")));
    rt.step().unwrap();
    let target = oid.clone();
    rt.register(
        &EnzymeDescriptor::new("judge", "judge"),
        move |cx: &mut EnzymeCx<'_>| {
            cx.cei_op(&target, Severity::Crit, "test:broken", "it broke");
            Outcome::Ok
        },
    )
    .unwrap();
    rt.inject(&Word::new("t").unwrap(), Impulse::signal(p("judge")))
        .unwrap();
    rt.step().unwrap();
    assert_eq!(ops::state(rt.snapshot(), &oid).as_deref(), Some("ist:fail"));
    assert_eq!(
        rt.snapshot()
            .read(&p(&format!("{}/close/status", dossier(&oid)))),
        Some(&Value::text("sts:fail"))
    );

    rt.register(
        &EnzymeDescriptor::new("doom", "doom"),
        |cx: &mut EnzymeCx<'_>| {
            cx.cei(Severity::Fatal, "test:doom", "cannot go on", None);
            Outcome::Ok
        },
    )
    .unwrap();
    rt.inject(&Word::new("t").unwrap(), Impulse::signal(p("doom")))
        .unwrap();
    for _ in 0..10 {
        if rt.step().is_err() {
            break;
        }
    }
    assert!(
        rt.is_down(),
        "a fatal fact shuts the runtime down through op/shdn"
    );
}

#[test]
fn operations_started_by_enzymes_get_the_same_ids_and_hashes_on_every_executor() {
    let mut reference = None;
    for (label, config) in backends() {
        let mut rt = Runtime::new(Config { ..config }).unwrap();
        rt.register(
            &EnzymeDescriptor::new("starter", "start"),
            |cx: &mut EnzymeCx<'_>| {
                let n = cx.payload().and_then(Value::as_i64).unwrap_or(0);
                let oid = cx.op_start(OpSpec::new(p("op/job")));
                cx.op_await(
                    &oid,
                    AwaitSpec {
                        want: "ist:ok".into(),
                        ttl_beats: (n % 3) as u64,
                        cont: p("job/done"),
                        payload: Some(Value::I64(n)),
                        reply_to: None,
                    },
                );
                cx.emit_after(
                    (n % 4) as u32,
                    Impulse::targeted(p("finish"), dossier(&oid)),
                );
                Outcome::Ok
            },
        )
        .unwrap();
        rt.register(
            &EnzymeDescriptor::new("finisher", "finish"),
            |cx: &mut EnzymeCx<'_>| {
                let oid = cx.target().and_then(|t| t.last()).cloned().unwrap();
                cx.op_close(&oid, OpStatus::Ok, "finished");
                Outcome::Ok
            },
        )
        .unwrap();
        rt.register(
            &EnzymeDescriptor::new("done", "job/done"),
            |cx: &mut EnzymeCx<'_>| {
                cx.append(
                    &p("/data/done"),
                    cx.payload().cloned().unwrap_or(Value::Null),
                )
                .unwrap();
                Outcome::Ok
            },
        )
        .unwrap();
        let source = Word::new("t").unwrap();
        rt.injector()
            .inject_batch(
                &source,
                (0..200).map(|n| Impulse::signal(p("start")).with_payload(Value::I64(n))),
            )
            .unwrap();
        let hashes: Vec<_> = (0..12).map(|_| rt.step().unwrap().state_hash).collect();
        assert!(
            rt.snapshot().children(&p("/data/done")).len() > 50,
            "{label}: continuations ran"
        );
        match &reference {
            None => reference = Some(hashes),
            Some(expected) => assert_eq!(&hashes, expected, "{label}"),
        }
    }
}
