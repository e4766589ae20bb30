//! Helpers shared by cep's cross-crate integration tests (in `tests/`).

pub mod cc;
pub mod plugins;
pub mod world;

use std::sync::{Arc, Mutex, Once};

use cep_host::{cei, Config, EnzymeCx, ExecutorKind, Fact, Outcome, Path, Runtime};

/// Parses a path literal.
pub fn p(text: &str) -> Path {
    Path::parse(text).unwrap_or_else(|e| panic!("test path {text:?}: {e}"))
}

/// The four executor setups every determinism claim is checked on.
pub fn backends() -> Vec<(String, Config)> {
    let mut out = vec![("cooperative".to_owned(), Config::default())];
    for workers in [1, 2, 8] {
        let config = Config {
            executor: ExecutorKind::Threaded,
            workers,
            ..Config::default()
        };
        out.push((format!("threaded/{workers}"), config));
    }
    out
}

/// A runtime with the default configuration.
pub fn runtime() -> Runtime {
    Runtime::new(Config::default()).expect("default configuration is valid")
}

/// The CEI facts in the mailbox of the latest snapshot with `topic`.
pub fn facts(runtime: &Runtime, topic: &str) -> Vec<Fact> {
    cei::facts(runtime.snapshot())
        .into_iter()
        .map(|(fact, _)| fact)
        .filter(|f| f.topic == topic)
        .collect()
}

/// A shared log of enzyme calls, as `(beat, label)`.
#[derive(Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<(u64, String)>>>);

impl CallLog {
    /// An enzyme callback that records `label` and succeeds.
    pub fn recorder(
        &self,
        label: &str,
    ) -> impl Fn(&mut EnzymeCx<'_>) -> Outcome + Send + Sync + 'static {
        let log = self.clone();
        let label = label.to_owned();
        move |cx: &mut EnzymeCx<'_>| {
            log.push(cx.beat(), &label);
            Outcome::Ok
        }
    }

    pub fn push(&self, beat: u64, label: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((beat, label.to_owned()));
    }

    /// Every label recorded, in call order.
    pub fn labels(&self) -> Vec<String> {
        self.entries().into_iter().map(|(_, l)| l).collect()
    }

    pub fn entries(&self) -> Vec<(u64, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Silences the default panic message for panics the tests cause on
/// purpose (their payload contains "deliberate"); others still print.
pub fn quiet_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if !text.contains("deliberate") {
                default(info);
            }
        }));
    });
}
