//! `store`: an example native organ. An append-only item store under
//! `/data/store`, fed by its own clock.
//!
//! - constructor `store.ctor`: writes `meta/created` and `meta/count`,
//!   binds `store.audit` to `items/`, and starts the clock;
//! - validator `store.vald`: the constructor's cells exist;
//! - destructor `store.dtor`: records `meta/closed`;
//! - `store.tick` (`store/tick`): every beat emits the next tick and one
//!   `store/put`; every 25 beats asks the index to rebuild (`index/rebuild`);
//! - `store.check` runs *before* `store.put` for the same impulse and
//!   refuses empty payloads; `store.put` appends the item, counts it, and
//!   tells the index (`index/add`) and the auditor;
//! - `store.audit` is bound (propagating) to `/data/store/items`: it runs
//!   only for impulses targeted there.

use cep_sdk::plugin::{Cx, HostError, Organ, Plugin};
use cep_sdk::{EnzymeDescriptor, OrganDescriptor, Outcome, Value};

const ROOT: &str = "/data/store";

fn counter(cx: &Cx<'_>, path: &str) -> Result<i64, HostError> {
    Ok(cx.read(path)?.and_then(|v| v.as_i64()).unwrap_or(0))
}

struct Store;

impl Organ for Store {
    fn construct(&self, cx: &mut Cx<'_>) -> Outcome {
        let run = |cx: &mut Cx<'_>| -> Result<(), HostError> {
            cx.write(&format!("{ROOT}/meta/created"), cx.beat() as i64)?;
            cx.write(&format!("{ROOT}/meta/count"), 0i64)?;
            cx.bind(&format!("{ROOT}/items"), "store.audit", true)?;
            cx.emit("store/tick", None, None)
        };
        run(cx)
            .map(|_| Outcome::Ok)
            .unwrap_or_else(|e| Outcome::Fatal(e.0))
    }

    fn validate(&self, cx: &mut Cx<'_>) -> Outcome {
        match cx.exists(&format!("{ROOT}/meta/created")) {
            Ok(true) => Outcome::Ok,
            Ok(false) => Outcome::Fatal("store: meta/created is missing".into()),
            Err(e) => Outcome::Fatal(e.0),
        }
    }

    fn destruct(&self, cx: &mut Cx<'_>) -> Outcome {
        match cx.write(&format!("{ROOT}/meta/closed"), cx.beat() as i64) {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Fatal(e.0),
        }
    }
}

fn tick(cx: &mut Cx<'_>) -> Result<(), HostError> {
    let beat = cx.beat();
    cx.emit("store/tick", None, None)?;
    cx.emit("store/put", None, Some(Value::I64((beat * 7 % 10) as i64)))?;
    if beat.is_multiple_of(25) {
        cx.emit("index/rebuild", None, None)?;
    }
    Ok(())
}

fn check(cx: &mut Cx<'_>) -> Result<Outcome, HostError> {
    match cx.payload() {
        None | Some(Value::Null) => Ok(Outcome::Fatal("store/put needs a payload".into())),
        Some(_) => {
            cx.write(&format!("{ROOT}/meta/last_checked"), cx.beat() as i64)?;
            Ok(Outcome::Ok)
        }
    }
}

fn put(cx: &mut Cx<'_>) -> Result<(), HostError> {
    let Some(item) = cx.payload() else {
        return Ok(());
    };
    let items = format!("{ROOT}/items");
    cx.append(&items, item.clone())?;
    let count = counter(cx, &format!("{ROOT}/meta/count"))?;
    cx.write(&format!("{ROOT}/meta/count"), count + 1)?;
    cx.emit("index/add", None, Some(item))?;
    cx.emit("store/audit", Some(&items), None)
}

fn audit(cx: &mut Cx<'_>) -> Result<(), HostError> {
    let at = format!("{ROOT}/audit/seen");
    let seen = counter(cx, &at)?;
    cx.write(&at, seen + 1)
}

fn build() -> Plugin {
    Plugin::new("store", "0.1.0")
        .capability("write:/data/store")
        .capability("emit:store")
        .capability("emit:index")
        .organ_with(
            OrganDescriptor::new("store", ROOT).label("append-only item store"),
            Store,
        )
        .enzyme(
            EnzymeDescriptor::new("store.tick", "store/tick").label("clock"),
            tick,
        )
        .enzyme(
            EnzymeDescriptor::new("store.check", "store/put").before(&["store.put"]),
            check,
        )
        .enzyme(
            EnzymeDescriptor::new("store.put", "store/put").after(&["store.check"]),
            put,
        )
        .enzyme(
            EnzymeDescriptor::new("store.audit", "store/audit").writes(&["/data/store/audit"]),
            audit,
        )
}

cep_sdk::export_plugin!(build());
