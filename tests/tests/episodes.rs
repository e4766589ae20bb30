//! E3 episodes (issue "OPS dossiers, the episodic engine (E3) and the
//! executor backends", acceptance 5–8).

use cep_host::episode::{DecisionKind, Lease};
use cep_host::ops::{self, dossier};
use cep_host::{
    Budgets, Config, EnzymeCx, EnzymeDescriptor, EpisodeSpec, Hash, Impulse, Name, OpSpec,
    OpStatus, Outcome, Profile, Runtime, SliceTicket, TicketError, Value, Word,
};
use cep_tests::{backends, facts, p, runtime, CallLog};

/// How many times the slice's own episode has yielded so far (read from its
/// dossier in the previous snapshot).
fn yields(cx: &EnzymeCx<'_>) -> usize {
    let eid = cx.episode().expect("a slice").clone();
    ops::history(cx.snapshot(), &eid)
        .iter()
        .filter(|(s, _)| s == "ist:yield")
        .count()
}

/// Registers `name`, a callback that yields every slice, for episodes that
/// run until something outside ends them.
fn register_yielder(rt: &mut Runtime, name: &str) {
    rt.register(
        &EnzymeDescriptor::new(name, &format!("ep/cb/{name}")),
        |cx: &mut EnzymeCx<'_>| {
            cx.ep_yield().unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
}

fn close_field(rt: &Runtime, eid: &Name, field: &str) -> Option<Value> {
    rt.snapshot()
        .read(&p(&format!("{}/close/{field}", dossier(eid))))
        .cloned()
}

#[test]
fn an_episode_that_yields_five_times_closes_ok_on_the_sixth_beat() {
    let mut rt = runtime();
    rt.register(
        &EnzymeDescriptor::new("five", "ep/cb/five"),
        |cx: &mut EnzymeCx<'_>| {
            if yields(cx) < 5 {
                cx.ep_yield().unwrap();
            }
            Outcome::Ok
        },
    )
    .unwrap();
    let eid = rt.ep_start(EpisodeSpec::new("five", Profile::Ro));
    rt.run(10).unwrap();
    let history = ops::history(rt.snapshot(), &eid);
    let states: Vec<&str> = history.iter().map(|(s, _)| s.as_str()).collect();
    // One entry per slice: each slice ran in `ist:run` and ended in the
    // state its entry records, within one beat.
    assert_eq!(
        states,
        [
            "ist:plan",
            "ist:yield",
            "ist:yield",
            "ist:yield",
            "ist:yield",
            "ist:yield",
            "ist:ok"
        ]
    );
    let beats: Vec<u64> = history.iter().map(|(_, b)| *b).collect();
    assert_eq!(beats, [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(
        close_field(&rt, &eid, "status"),
        Some(Value::text("sts:ok"))
    );
    assert_eq!(
        close_field(&rt, &eid, "beat"),
        Some(Value::I64(6)),
        "started at beat 0, closed at beat 6"
    );
    assert_eq!(rt.episodes_live(), 0);
}

#[test]
fn an_episodes_parameters_are_sealed_in_its_envelope_and_its_dossier_holds_no_more() {
    let mut rt = runtime();
    register_yielder(&mut rt, "idle");
    let mut spec = EpisodeSpec::new("idle", Profile::Ro);
    spec.max_beats = 40;
    spec.budgets = Budgets {
        io_budget_bytes: 300,
        cpu_budget_ns: 0,
    };
    let eid = rt.ep_start(spec);
    rt.run(3).unwrap();
    let snapshot = rt.snapshot();
    let envelope = |field: &str| {
        snapshot
            .read(&p(&format!("{}/envelope/{field}", dossier(&eid))))
            .cloned()
    };
    assert_eq!(envelope("callback"), Some(Value::text("idle")));
    assert_eq!(envelope("signal"), Some(Value::text("/ep/run")));
    assert_eq!(envelope("max_beats"), Some(Value::I64(40)));
    assert_eq!(envelope("io_budget"), Some(Value::I64(300)));
    assert_eq!(envelope("cpu_budget_ns"), Some(Value::I64(0)));
    assert_eq!(envelope("mode"), Some(Value::text("ep:ro")));
    let envelope_node = snapshot
        .node(&p(&format!("{}/envelope", dossier(&eid))))
        .expect("an envelope");
    assert!(envelope_node.is_sealed());
    // Every slice copies and rehashes the dossier's list, so a yielding
    // episode that accounted no IO keeps it to these three.
    let names: Vec<String> = snapshot
        .children(&dossier(&eid))
        .iter()
        .map(|n| n.as_str().to_owned())
        .collect();
    assert_eq!(names, ["envelope", "history", "state"]);
}

#[test]
fn an_episode_awaiting_with_ttl_1_is_cancelled() {
    let mut rt = runtime();
    let other = rt.op_start(OpSpec::new(p("op/slow")));
    let target = other.clone();
    rt.register(
        &EnzymeDescriptor::new("waits", "ep/cb/waits"),
        move |cx: &mut EnzymeCx<'_>| {
            cx.ep_await(&target, "ist:done", 1).unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
    let eid = rt.ep_start(EpisodeSpec::new("waits", Profile::Ro));
    rt.run(8).unwrap();
    assert_eq!(ops::state(rt.snapshot(), &eid).as_deref(), Some("ist:cxl"));
    assert_eq!(
        close_field(&rt, &eid, "status"),
        Some(Value::text("sts:cnl"))
    );
    let states: Vec<String> = ops::history(rt.snapshot(), &eid)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert!(states.contains(&"ist:await".to_owned()), "{states:?}");
}

#[test]
fn an_episode_resumes_when_the_awaited_operation_reaches_its_state() {
    let mut rt = runtime();
    let other = rt.op_start(OpSpec::new(p("op/job")));
    let target = other.clone();
    let log = CallLog::default();
    let seen = log.clone();
    rt.register(
        &EnzymeDescriptor::new("resumes", "ep/cb/resumes"),
        move |cx: &mut EnzymeCx<'_>| {
            let waited = ops::history(cx.snapshot(), cx.episode().unwrap())
                .iter()
                .any(|(s, _)| s == "ist:await");
            seen.push(cx.beat(), if waited { "resumed" } else { "first" });
            if !waited {
                cx.ep_await(&target, "ist:done", 0).unwrap();
            }
            Outcome::Ok
        },
    )
    .unwrap();
    let eid = rt.ep_start(EpisodeSpec::new("resumes", Profile::Ro));
    rt.run(4).unwrap();
    assert_eq!(log.labels(), ["first"]);
    rt.op_state(&other, "ist:done");
    rt.run(4).unwrap();
    assert_eq!(log.labels(), ["first", "resumed"]);
    assert_eq!(
        close_field(&rt, &eid, "status"),
        Some(Value::text("sts:ok"))
    );
}

#[test]
fn an_rw_episode_changes_cells_only_under_its_lease() {
    let mut rt = runtime();
    rt.register(
        &EnzymeDescriptor::new("rw", "ep/cb/rw"),
        |cx: &mut EnzymeCx<'_>| {
            cx.require_rw().unwrap();
            let x = p("/data/rw/x");
            match yields(cx) {
                0 => {
                    cx.write(&x, 0).unwrap();
                    cx.write(&p("/data/rw/z"), 0).unwrap();
                }
                1 => cx
                    .ep_request_lease(Lease {
                        path: p("/data/rw"),
                        lock_store: true,
                        lock_data: true,
                        include_descendants: true,
                    })
                    .unwrap(),
                2 => cx.write(&x, 1).unwrap(),
                3 => cx.ep_release_lease(&p("/data/rw")).unwrap(),
                _ => {
                    cx.write(&x, 2).unwrap();
                    return Outcome::Ok;
                }
            }
            cx.ep_yield().unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
    rt.register(
        &EnzymeDescriptor::new("intruder", "intrude"),
        |cx: &mut EnzymeCx<'_>| {
            cx.write(&p("/data/rw/y"), 9).unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
    let eid = rt.ep_start(EpisodeSpec::new("rw", Profile::Rw));
    rt.run(3).unwrap(); // beat 0: plan; 1: unleased writes; 2: lease granted
    assert_eq!(
        facts(&rt, "ep:lease/missing").len(),
        1,
        "one fact for the offending slice, however many writes"
    );
    assert_eq!(rt.snapshot().read(&p("/data/rw/x")), None);
    rt.inject(&Word::new("t").unwrap(), Impulse::signal(p("intrude")))
        .unwrap();
    rt.step().unwrap(); // beat 3: the episode writes under its lease; the intruder is refused
    assert_eq!(rt.snapshot().read(&p("/data/rw/x")), Some(&Value::I64(1)));
    assert_eq!(
        rt.snapshot().read(&p("/data/rw/y")),
        None,
        "another writer inside the lease is refused"
    );
    assert_eq!(facts(&rt, "ep:lease/missing").len(), 2);
    let leases = rt
        .snapshot()
        .children(&p(&format!("{}/leases", dossier(&eid))));
    assert_eq!(leases.len(), 1, "the lease is recorded in the dossier");
    rt.run(4).unwrap(); // release, then a write without the lease
    assert_eq!(
        rt.snapshot().read(&p("/data/rw/x")),
        Some(&Value::I64(1)),
        "refused again after release"
    );
    assert_eq!(facts(&rt, "ep:lease/missing").len(), 3);
    assert_eq!(
        close_field(&rt, &eid, "status"),
        Some(Value::text("sts:ok"))
    );
}

#[test]
fn leases_unwind_when_an_episode_is_cancelled() {
    let mut rt = runtime();
    rt.register(
        &EnzymeDescriptor::new("holder", "ep/cb/holder"),
        |cx: &mut EnzymeCx<'_>| {
            if yields(cx) == 0 {
                let lease = Lease {
                    path: p("/data/held"),
                    lock_store: true,
                    lock_data: true,
                    include_descendants: true,
                };
                cx.ep_request_lease(lease).unwrap();
            }
            cx.ep_yield().unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
    rt.register(
        &EnzymeDescriptor::new("writer", "write"),
        |cx: &mut EnzymeCx<'_>| {
            cx.write(&p("/data/held/v"), cx.beat() as i64).unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
    let eid = rt.ep_start(EpisodeSpec::new("holder", Profile::Rw));
    rt.run(3).unwrap();
    rt.inject(&Word::new("t").unwrap(), Impulse::signal(p("write")))
        .unwrap();
    rt.step().unwrap();
    assert_eq!(rt.snapshot().read(&p("/data/held/v")), None);
    rt.ep_cancel(&eid);
    rt.step().unwrap();
    assert_eq!(
        close_field(&rt, &eid, "status"),
        Some(Value::text("sts:cnl"))
    );
    rt.inject(&Word::new("t").unwrap(), Impulse::signal(p("write")))
        .unwrap();
    rt.step().unwrap();
    assert!(
        rt.snapshot().read(&p("/data/held/v")).is_some(),
        "the lease went with the episode"
    );
}

#[test]
fn a_slice_over_its_io_budget_is_cancelled_at_its_next_check() {
    let mut rt = runtime();
    let log = CallLog::default();
    let seen = log.clone();
    rt.register(
        &EnzymeDescriptor::new("reader", "ep/cb/reader"),
        move |cx: &mut EnzymeCx<'_>| {
            cx.account_io(60).unwrap();
            if cx.check_cancel() {
                seen.push(cx.beat(), "saw cancel");
                return Outcome::Ok;
            }
            seen.push(cx.beat(), "went on");
            cx.ep_yield().unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
    let mut spec = EpisodeSpec::new("reader", Profile::Ro);
    spec.budgets = Budgets {
        io_budget_bytes: 100,
        cpu_budget_ns: 0,
    };
    let eid = rt.ep_start(spec);
    rt.run(6).unwrap();
    assert_eq!(log.labels(), ["went on", "saw cancel"]);
    assert_eq!(
        close_field(&rt, &eid, "status"),
        Some(Value::text("sts:cnl"))
    );
    let io = facts(&rt, "ep:bud/io");
    assert_eq!(io.len(), 1);
    assert!(
        io[0].note.contains("120") && io[0].note.contains("100"),
        "{}",
        io[0].note
    );
    assert_eq!(
        rt.snapshot()
            .read(&p(&format!("{}/io_used", dossier(&eid)))),
        Some(&Value::I64(120))
    );
}

#[test]
fn max_beats_cancels_an_episode_that_runs_too_long() {
    let mut rt = runtime();
    register_yielder(&mut rt, "forever");
    let mut spec = EpisodeSpec::new("forever", Profile::Ro);
    spec.max_beats = 3;
    let eid = rt.ep_start(spec);
    rt.run(10).unwrap();
    assert_eq!(
        close_field(&rt, &eid, "status"),
        Some(Value::text("sts:cnl"))
    );
    assert_eq!(facts(&rt, "ep:max/beats").len(), 1);
}

#[test]
fn a_panicking_slice_fails_its_episode_and_the_host_goes_on() {
    cep_tests::quiet_deliberate_panics();
    let mut rt = runtime();
    rt.register(
        &EnzymeDescriptor::new("fragile", "ep/cb/fragile"),
        |_: &mut EnzymeCx<'_>| -> Outcome { panic!("deliberate slice failure") },
    )
    .unwrap();
    let eid = rt.ep_start(EpisodeSpec::new("fragile", Profile::Rw));
    rt.run(4).unwrap();
    assert_eq!(
        close_field(&rt, &eid, "status"),
        Some(Value::text("sts:fail"))
    );
    assert!(close_field(&rt, &eid, "summary")
        .unwrap()
        .to_string()
        .contains("deliberate slice failure"));
}

/// A suite of episodes mixing yields, awaits (met and timed out), leases,
/// IO budgets, cancellations and a CPU budget that is always exceeded.
fn scenario(
    config: Config,
    replay: Option<Vec<cep_host::episode::Decision>>,
) -> (Vec<Hash>, Vec<cep_host::episode::Decision>) {
    let mut rt = Runtime::new(config).unwrap();
    if let Some(decisions) = replay {
        rt.replay_decisions(decisions);
    }
    let gate = rt.op_start(OpSpec::new(p("op/gate")));
    let g = gate.clone();
    rt.register(
        &EnzymeDescriptor::new("mixed", "ep/cb/mixed"),
        move |cx: &mut EnzymeCx<'_>| {
            let eid = cx.episode().unwrap().clone();
            let n: usize = eid.as_str().bytes().map(|b| b as usize).sum();
            let round = yields(cx);
            let cell = p("/data/ep").child(Name::from_index((n % 7) as u64));
            if n.is_multiple_of(5) && round == 0 {
                let lease = Lease {
                    path: cell.clone(),
                    lock_store: true,
                    lock_data: true,
                    include_descendants: true,
                };
                cx.ep_request_lease(lease).unwrap();
            }
            cx.write(&cell, (n + round) as i64).ok();
            cx.account_io((n % 40) as u64).unwrap();
            if cx.check_cancel() {
                return Outcome::Ok;
            }
            match (n + round) % 6 {
                0 if round > 2 => cx.ep_close(OpStatus::Ok, "done").unwrap(),
                1 => cx.ep_await(&g, "ist:open", (n % 4) as u64).unwrap(),
                2 if round > 4 => cx.ep_close(OpStatus::Fail, "gave up").unwrap(),
                _ => cx.ep_yield().unwrap(),
            }
            Outcome::Ok
        },
    )
    .unwrap();
    let mut eids = Vec::new();
    for i in 0..24u64 {
        let mut spec =
            EpisodeSpec::new("mixed", if i % 3 == 0 { Profile::Rw } else { Profile::Ro });
        spec.budgets.io_budget_bytes = 150 + i * 10;
        spec.max_beats = 12 + i % 5;
        if i == 7 {
            spec.budgets.cpu_budget_ns = 1; // exceeded by any slice
        }
        eids.push(rt.ep_start(spec));
    }
    let mut hashes = Vec::new();
    for beat in 0..30 {
        if beat == 6 {
            rt.op_state(&gate, "ist:open");
        }
        if beat == 9 {
            rt.ep_cancel(&eids[4]);
        }
        hashes.push(rt.step().unwrap().state_hash);
    }
    (hashes, rt.decisions().to_vec())
}

fn decided(decisions: &[cep_host::episode::Decision]) -> Vec<(u64, Name)> {
    decisions
        .iter()
        .map(|d| match &d.kind {
            DecisionKind::CancelEpisodeCpu { eid, .. } => (d.beat, eid.clone()),
        })
        .collect()
}

#[test]
fn an_episode_suite_is_identical_on_every_executor_and_when_replayed_from_recorded_decisions() {
    let mut reference: Option<(Vec<Hash>, Vec<cep_host::episode::Decision>)> = None;
    for (label, config) in backends() {
        let (hashes, decisions) = scenario(config, None);
        assert_eq!(
            decisions.len(),
            1,
            "{label}: the CPU-budget cancellation is recorded"
        );
        assert!(matches!(
            decisions[0].kind,
            DecisionKind::CancelEpisodeCpu { .. }
        ));
        match &reference {
            None => reference = Some((hashes, decisions)),
            Some((expected, expected_decisions)) => {
                assert_eq!(&hashes, expected, "{label}");
                // The measured nanoseconds differ run to run; what was decided may not.
                assert_eq!(decided(&decisions), decided(expected_decisions), "{label}");
            }
        }
    }
    let (hashes, decisions) = reference.unwrap();
    let (replayed, replayed_decisions) = scenario(Config::default(), Some(decisions.clone()));
    assert_eq!(
        replayed, hashes,
        "a replay given the recorded decisions reproduces every hash"
    );
    assert_eq!(
        replayed_decisions, decisions,
        "a replay records the decisions it applied"
    );
    let (without, _) = scenario(Config::default(), Some(Vec::new()));
    assert_ne!(
        without, hashes,
        "a replay applies the record, it does not measure"
    );
}

fn lease(path: &str) -> Lease {
    Lease {
        path: p(path),
        lock_store: true,
        lock_data: true,
        include_descendants: true,
    }
}

#[test]
fn resume_rw_cancels_the_episode_when_another_took_its_lease_while_suspended() {
    let mut rt = runtime();
    // "first": leases /data/s, suspends dropping it, tries to write, resumes.
    rt.register(
        &EnzymeDescriptor::new("first", "ep/cb/first"),
        |cx: &mut EnzymeCx<'_>| {
            match yields(cx) {
                0 => cx.ep_request_lease(lease("/data/s")).unwrap(),
                1 => cx.suspend_rw(true).unwrap(),
                2 => {
                    assert!(cx.require_rw().is_err(), "suspended: the RW guard refuses");
                    cx.write(&p("/data/s/v"), 1).unwrap();
                    cx.resume_rw().unwrap();
                }
                _ => return Outcome::Ok,
            }
            cx.ep_yield().unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
    // "second": starts later and takes the lease while "first" is suspended.
    rt.register(
        &EnzymeDescriptor::new("second", "ep/cb/second"),
        |cx: &mut EnzymeCx<'_>| {
            if yields(cx) == 0 {
                cx.ep_request_lease(lease("/data/s")).unwrap();
            }
            cx.ep_yield().unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
    let first = rt.ep_start(EpisodeSpec::new("first", Profile::Rw));
    rt.run(2).unwrap(); // beat 1: first leases
    let second = rt.ep_start(EpisodeSpec::new("second", Profile::Rw));
    rt.run(5).unwrap();
    assert_eq!(
        rt.snapshot().read(&p("/data/s/v")),
        None,
        "a suspended episode cannot write"
    );
    assert_eq!(
        close_field(&rt, &first, "status"),
        Some(Value::text("sts:cnl"))
    );
    assert_eq!(facts(&rt, "ep:lease/lost").len(), 1);
    assert_eq!(
        ops::state(rt.snapshot(), &second).as_deref(),
        Some("ist:yield"),
        "the new owner keeps going"
    );
}

#[test]
fn resume_rw_gets_the_leases_back_when_nobody_took_them() {
    let mut rt = runtime();
    rt.register(
        &EnzymeDescriptor::new("pauser", "ep/cb/pauser"),
        |cx: &mut EnzymeCx<'_>| {
            match yields(cx) {
                0 => cx.ep_request_lease(lease("/data/p")).unwrap(),
                1 => cx.suspend_rw(true).unwrap(),
                2 => cx.resume_rw().unwrap(),
                _ => {
                    cx.write(&p("/data/p/v"), 7).unwrap();
                    return Outcome::Ok;
                }
            }
            cx.ep_yield().unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
    let eid = rt.ep_start(EpisodeSpec::new("pauser", Profile::Rw));
    rt.run(8).unwrap();
    assert_eq!(rt.snapshot().read(&p("/data/p/v")), Some(&Value::I64(7)));
    assert_eq!(
        close_field(&rt, &eid, "status"),
        Some(Value::text("sts:ok"))
    );
}

#[test]
fn a_slice_running_when_its_episode_is_cancelled_sees_check_cancel() {
    let (mut rt, eid, log) = polite_after_3_beats();
    rt.ep_cancel(&eid);
    rt.run(3).unwrap();
    assert_eq!(log.labels(), ["running", "running", "cancelled"]);
    assert_eq!(
        close_field(&rt, &eid, "status"),
        Some(Value::text("sts:cnl"))
    );
}

/// An episode whose slices log whether they see a cancellation, and yield.
fn polite(rt: &mut Runtime, name: &str, log: &CallLog) {
    let seen = log.clone();
    rt.register(
        &EnzymeDescriptor::new(name, &format!("ep/cb/{name}")),
        move |cx: &mut EnzymeCx<'_>| {
            let label = if cx.check_cancel() {
                "cancelled"
            } else {
                "running"
            };
            seen.push(cx.beat(), label);
            cx.ep_yield().unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
}

/// A runtime whose one `polite` episode has run its slices of beats 1 and 2;
/// the next is queued for beat 3.
fn polite_after_3_beats() -> (Runtime, Name, CallLog) {
    let mut rt = runtime();
    let log = CallLog::default();
    polite(&mut rt, "polite", &log);
    let eid = rt.ep_start(EpisodeSpec::new("polite", Profile::Ro));
    rt.run(3).unwrap();
    (rt, eid, log)
}

#[test]
fn a_queued_slice_cancelled_by_its_ticket_starts_cancelled_and_ends_its_episode() {
    let (mut rt, eid, log) = polite_after_3_beats();
    let ticket = rt.slice_ticket(&eid).expect("a slice queued for beat 3");
    assert_eq!(ticket, SliceTicket::new(eid.clone(), 3));
    assert_eq!(ticket.to_string(), format!("{eid}@3"));
    rt.cancel_ticket(&ticket).unwrap();
    rt.run(3).unwrap();
    assert_eq!(
        log.entries(),
        [
            (1, "running".to_owned()),
            (2, "running".to_owned()),
            (3, "cancelled".to_owned())
        ]
    );
    assert_eq!(
        close_field(&rt, &eid, "status"),
        Some(Value::text("sts:cnl"))
    );
    assert_eq!(close_field(&rt, &eid, "beat"), Some(Value::I64(3)));
    let cancelled = facts(&rt, "ep:cancel/ticket");
    assert_eq!(cancelled.len(), 1);
    assert!(cancelled[0].note.contains(&ticket.to_string()));
    assert_eq!(rt.episodes_live(), 0);
    assert_eq!(
        rt.slice_ticket(&eid),
        None,
        "an ended episode has no ticket"
    );
}

#[test]
fn a_stale_unqueued_or_malformed_ticket_is_refused_and_cancels_nothing() {
    let (mut rt, eid, log) = polite_after_3_beats();
    let stale = SliceTicket::new(eid.clone(), 2);
    assert_eq!(
        rt.cancel_ticket(&stale),
        Err(TicketError::Stale {
            ticket: stale,
            next_beat: 3
        })
    );
    let early = SliceTicket::new(eid.clone(), 5);
    assert_eq!(
        rt.cancel_ticket(&early),
        Err(TicketError::NotQueued { ticket: early }),
        "only beat 3's slice is queued"
    );
    let nobody = SliceTicket::new(Name::new("9-h9").unwrap(), 3);
    assert_eq!(
        rt.cancel_ticket(&nobody),
        Err(TicketError::NotLive { ticket: nobody })
    );
    for text in ["", "0-h0", "0-h0@", "@3", "0-h0@x", "a/b@3"] {
        let err = text.parse::<SliceTicket>().unwrap_err();
        assert!(matches!(err, TicketError::Malformed { .. }), "{text:?}");
        assert!(err.to_string().contains("<episode id>@<beat>"), "{err}");
    }
    assert_eq!(
        "0-h0@3".parse::<SliceTicket>(),
        Ok(SliceTicket::new(Name::new("0-h0").unwrap(), 3))
    );
    rt.run(3).unwrap();
    assert_eq!(rt.episodes_live(), 1, "nothing was cancelled");
    assert!(log.labels().iter().all(|l| l == "running"));
    assert!(facts(&rt, "ep:cancel/ticket").is_empty());
}

/// A worker episode that yields forever and a supervisor episode that, in
/// its slice of beat `at`, cancels the worker's slice of beat `target` by
/// ticket and closes. `supervisor_first`: which is started (so runs) first.
fn supervised(
    config: Config,
    supervisor_first: bool,
    at: u64,
    target: u64,
) -> (Runtime, Name, CallLog) {
    let mut rt = Runtime::new(config).unwrap();
    let log = CallLog::default();
    polite(&mut rt, "worker", &log);
    // Host ids are `<beat>-h<seq>`: both start before beat 0.
    let worker_id = Name::new(if supervisor_first { "0-h1" } else { "0-h0" }).unwrap();
    let worker = worker_id.clone();
    rt.register(
        &EnzymeDescriptor::new("boss", "ep/cb/boss"),
        move |cx: &mut EnzymeCx<'_>| {
            if cx.beat() < at {
                cx.ep_yield().unwrap();
            } else {
                cx.ep_cancel_ticket(&SliceTicket::new(worker.clone(), target));
                cx.ep_close(OpStatus::Ok, "done").unwrap();
            }
            Outcome::Ok
        },
    )
    .unwrap();
    let order = if supervisor_first {
        ["boss", "worker"]
    } else {
        ["worker", "boss"]
    };
    for callback in order {
        rt.ep_start(EpisodeSpec::new(callback, Profile::Ro));
    }
    rt.run(8).unwrap();
    (rt, worker_id, log)
}

#[test]
fn an_enzyme_cancelling_a_running_slice_ends_its_episode_whatever_the_agenda_order() {
    let mut histories = Vec::new();
    for supervisor_first in [true, false] {
        let mut hashes: Vec<(String, Hash)> = Vec::new();
        for (backend, config) in backends() {
            let (rt, worker, log) = supervised(config, supervisor_first, 3, 3);
            assert_eq!(
                close_field(&rt, &worker, "status"),
                Some(Value::text("sts:cnl")),
                "{backend}"
            );
            assert_eq!(close_field(&rt, &worker, "beat"), Some(Value::I64(3)));
            // The running slice saw nothing mid-slice: its end is recorded,
            // then the cancellation, in the same beat.
            assert_eq!(log.labels(), ["running"; 3], "{backend}");
            let history = ops::history(rt.snapshot(), &worker);
            assert_eq!(
                history[history.len() - 2..],
                [("ist:yield".to_owned(), 3), ("ist:cxl".to_owned(), 3)],
                "{backend}"
            );
            assert_eq!(facts(&rt, "ep:cancel/ticket").len(), 1, "{backend}");
            hashes.push((backend, rt.snapshot().hash()));
            if hashes.len() == 1 {
                histories.push(history);
            }
        }
        for (backend, hash) in &hashes[1..] {
            assert_eq!(*hash, hashes[0].1, "{backend} differs from cooperative");
        }
    }
    assert_eq!(
        histories[0], histories[1],
        "the worker's record does not depend on the agenda order"
    );
}

#[test]
fn an_enzyme_cancels_a_later_slice_by_ticket_and_a_past_one_only_raises_a_fact() {
    let (rt, worker, log) = supervised(Config::default(), true, 2, 4);
    assert_eq!(
        log.entries(),
        [
            (1, "running".to_owned()),
            (2, "running".to_owned()),
            (3, "running".to_owned()),
            (4, "cancelled".to_owned())
        ],
        "beat 4's slice starts cancelled; beat 3's ran as usual"
    );
    assert_eq!(close_field(&rt, &worker, "beat"), Some(Value::I64(4)));

    let (rt, worker, log) = supervised(Config::default(), true, 3, 1);
    assert_eq!(rt.episodes_live(), 1, "the worker runs on");
    assert!(close_field(&rt, &worker, "status").is_none());
    assert!(log.labels().iter().all(|l| l == "running"));
    let stale = facts(&rt, "ep:ticket/stale");
    assert_eq!(stale.len(), 1);
    assert!(
        stale[0].note.contains(&format!("{worker}@1")),
        "{}",
        stale[0].note
    );
}

/// An episode cancelled earlier in the agenda of the beat its slice yields
/// in: the yield is recorded (the slice ran) and the cancellation closes
/// the dossier, but no next slice is queued for an episode that no longer
/// exists. The yield finds that out without looking the episode up only
/// while no episode ended since the capture; here one did.
#[test]
fn a_yield_after_its_episode_was_cancelled_in_the_same_beat_queues_nothing() {
    for (backend, config) in backends() {
        // Without CEI signals, whose impulses would be pending too.
        let config = Config {
            cei_signal: false,
            ..config
        };
        let mut rt = Runtime::new(config).unwrap();
        rt.register(
            &EnzymeDescriptor::new("worker", "ep/cb/worker"),
            |cx: &mut EnzymeCx<'_>| {
                cx.ep_yield().unwrap();
                Outcome::Ok
            },
        )
        .unwrap();
        let eid = rt.ep_start(EpisodeSpec::new("worker", Profile::Ro));
        let target = eid.clone();
        rt.register(
            &EnzymeDescriptor::new("killer", "kill"),
            move |cx: &mut EnzymeCx<'_>| {
                cx.ep_cancel(&target, "stopped from outside");
                Outcome::Ok
            },
        )
        .unwrap();
        rt.run(3).unwrap();
        assert!(rt.has_pending(), "{backend}: the worker is live");
        // Injected impulses run before queued ones: the cancel is applied
        // before the worker's yield in the same beat.
        rt.inject(&Word::new("t").unwrap(), Impulse::signal(p("kill")))
            .unwrap();
        rt.step().unwrap();
        assert_eq!(
            close_field(&rt, &eid, "status"),
            Some(Value::text("sts:cnl")),
            "{backend}"
        );
        assert_eq!(rt.episodes_live(), 0, "{backend}");
        assert!(
            !rt.has_pending(),
            "{backend}: nothing queued for the cancelled episode"
        );
    }
}

/// Decisions are kept in memory only while something will take them: a
/// run without a journal keeps the newest `DECISIONS_KEPT`; a journaled
/// run keeps every untaken one until the journal takes it.
#[test]
fn decisions_kept_in_memory_are_bounded() {
    use cep_host::beat::DECISIONS_KEPT;
    let over_budget = |rt: &mut Runtime, n: usize| {
        for _ in 0..n {
            let mut spec = EpisodeSpec::new("spin", Profile::Ro);
            spec.budgets.cpu_budget_ns = 1; // exceeded by any slice
            rt.ep_start(spec);
        }
        rt.run(3).unwrap();
    };
    let n = DECISIONS_KEPT + 100;
    let mut rt = Runtime::new(Config::default()).unwrap();
    register_yielder(&mut rt, "spin");
    over_budget(&mut rt, n);
    assert_eq!(rt.decisions().len(), DECISIONS_KEPT, "without a journal");
    let mut rt = Runtime::new(Config::default()).unwrap();
    register_yielder(&mut rt, "spin");
    rt.record_inputs(true);
    over_budget(&mut rt, n);
    assert_eq!(
        rt.decisions().len(),
        n,
        "nothing lost before the journal takes it"
    );
    assert_eq!(rt.take_decisions().len(), n);
    assert_eq!(rt.decisions().len(), DECISIONS_KEPT);
    assert!(rt.take_decisions().is_empty());
}
