//! `index`: an example native organ that depends on `store`. It keeps a
//! count of items by value under `/data/index`, and rebuilds a summary with
//! an episode that scans the store a few items per beat.
//!
//! - constructor `index.ctor` runs after the store's (the organ depends on
//!   it) and fails if the store's `meta/created` is not there yet;
//! - validator `index.vald`; no destructor;
//! - `index.add` (`index/add`): counts one item;
//! - `index.rebuild` (`index/rebuild`): starts the `index.scan` episode
//!   unless one is running;
//! - `index.scan`: one slice per beat, at most [`SCAN_PER_SLICE`] items,
//!   yields until the end, then records the total and closes `sts:ok`.

use cep_sdk::plugin::{Cx, EpisodeRequest, HostError, Plugin};
use cep_sdk::{EnzymeDescriptor, OrganDescriptor, Outcome, Value};

const ROOT: &str = "/data/index";
const SCAN_PER_SLICE: i64 = 16;

fn int(cx: &Cx<'_>, path: &str) -> Result<i64, HostError> {
    Ok(cx.read(path)?.and_then(|v| v.as_i64()).unwrap_or(0))
}

fn construct(cx: &mut Cx<'_>) -> Result<Outcome, HostError> {
    match cx.read("/data/store/meta/created")? {
        Some(created) => {
            cx.write(&format!("{ROOT}/meta/built_on"), created)?;
            cx.write(&format!("{ROOT}/size"), 0i64)?;
            Ok(Outcome::Ok)
        }
        None => Ok(Outcome::Fatal(
            "the store organ is not constructed (its constructor must run first)".into(),
        )),
    }
}

fn validate(cx: &mut Cx<'_>) -> Result<Outcome, HostError> {
    if cx.exists(&format!("{ROOT}/meta/built_on"))? {
        Ok(Outcome::Ok)
    } else {
        Ok(Outcome::Fatal("index: meta/built_on is missing".into()))
    }
}

fn add(cx: &mut Cx<'_>) -> Result<(), HostError> {
    let key = match cx.payload() {
        Some(Value::I64(v)) => v.to_string(),
        Some(Value::Text(t)) => t.to_string(),
        _ => "other".to_owned(),
    };
    let at = format!("{ROOT}/by_value/{key}");
    let n = int(cx, &at)?;
    cx.write(&at, n + 1)?;
    let size = int(cx, &format!("{ROOT}/size"))?;
    cx.write(&format!("{ROOT}/size"), size + 1)
}

fn rebuild(cx: &mut Cx<'_>) -> Result<(), HostError> {
    let running = format!("{ROOT}/rebuild/running");
    if cx.read(&running)?.and_then(|v| v.as_bool()) == Some(true) {
        return Ok(());
    }
    let mut request = EpisodeRequest::new("index.scan");
    request.signal = "index/scan".into();
    request.max_beats = 1_000;
    let eid = cx.ep_start(&request)?;
    cx.write(&running, true)?;
    cx.write(&format!("{ROOT}/rebuild/eid"), eid.as_str())?;
    cx.write(&format!("{ROOT}/rebuild/cursor"), 0i64)?;
    cx.write(&format!("{ROOT}/rebuild/sum"), 0i64)
}

fn scan(cx: &mut Cx<'_>) -> Result<(), HostError> {
    let items = cx.children("/data/store/items")?;
    let cursor = int(cx, &format!("{ROOT}/rebuild/cursor"))?;
    let mut sum = int(cx, &format!("{ROOT}/rebuild/sum"))?;
    let end = (cursor + SCAN_PER_SLICE).min(items.len() as i64);
    for name in &items[cursor as usize..end as usize] {
        let item = cx.read(&format!("/data/store/items/{name}"))?;
        sum += item.and_then(|v| v.as_i64()).unwrap_or(0);
    }
    cx.write(&format!("{ROOT}/rebuild/cursor"), end)?;
    cx.write(&format!("{ROOT}/rebuild/sum"), sum)?;
    if end < items.len() as i64 {
        return cx.ep_yield();
    }
    cx.write(&format!("{ROOT}/rebuild/running"), false)?;
    cx.write(&format!("{ROOT}/rebuild/last_total"), end)?;
    cx.write(&format!("{ROOT}/rebuild/last_beat"), cx.beat() as i64)?;
    cx.ep_close("sts:ok", &format!("scanned {end} items, sum {sum}"))
}

fn build() -> Plugin {
    Plugin::new("index", "0.1.0")
        .capability("write:/data/index")
        .organ(
            OrganDescriptor::new("index", ROOT)
                .label("item counts by value")
                .depends_on(&["store"])
                .constructor("index.ctor")
                .validator("index.vald"),
        )
        .enzyme(
            EnzymeDescriptor::new("index.ctor", "organ/index/ctor"),
            construct,
        )
        .enzyme(
            EnzymeDescriptor::new("index.vald", "organ/index/vald"),
            validate,
        )
        .enzyme(EnzymeDescriptor::new("index.add", "index/add"), add)
        .enzyme(
            EnzymeDescriptor::new("index.rebuild", "index/rebuild"),
            rebuild,
        )
        .enzyme(
            EnzymeDescriptor::new("index.scan", "index/scan").writes(&["/data/index/rebuild"]),
            scan,
        )
}

cep_sdk::export_plugin!(build());
