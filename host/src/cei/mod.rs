//! CEI: structured diagnostics ("facts") stored in the tree.
//!
//! Owns the fact model and the mailbox layout. A fact is recorded at commit
//! time, so it is part of the state hash like any other cell:
//!
//! ```text
//! /data/mailbox/cei/<seq>          = "<topic>"     (seq: 10-digit index)
//!                       /sev       = "fatal" | "crit" | "usage" | "warn" | "debug"
//!                       /topic     = e.g. "cell:conflict"
//!                       /note      = human-readable text
//!                       /origin    = "host" or the enzyme / plugin that caused it
//!                       /subject   = the path the fact is about ("" when none)
//!                       /beat      = the beat that recorded it (i64)
//! ```
//!
//! The mailbox keeps the newest `cei_facts_max` facts. With `cei_signal` on,
//! each fact also emits `sig_cei/<sev>` targeted at the fact for the next
//! beat, so enzymes can react. Must not touch: what counts as a failure — the
//! callers decide that.

pub use cep_sdk::Severity;
use cep_sdk::{Name, Path, Value};

use crate::cell::{TreeError, WorkTree};

/// Facts raised at commit, each with the agenda position that raised it
/// (`None`: the host).
pub(crate) type Facts = Vec<(Fact, Option<u32>)>;

/// The mailbox path.
pub const MAILBOX: &str = "/data/mailbox/cei";

/// One diagnostic.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub severity: Severity,
    pub topic: String,
    pub note: String,
    pub origin: String,
    pub subject: Option<Path>,
    /// The operation the fact is about: a `crit` or `usage` fact closes it
    /// `sts:fail`. Not stored in the fact's cells.
    pub op: Option<Name>,
}

impl Fact {
    pub fn new(severity: Severity, topic: &str, note: impl Into<String>) -> Self {
        Fact {
            severity,
            topic: topic.to_owned(),
            note: note.into(),
            origin: "host".to_owned(),
            subject: None,
            op: None,
        }
    }

    /// Attaches the fact to an operation (see [`Fact::op`]).
    pub fn about_op(mut self, oid: Name) -> Self {
        self.op = Some(oid);
        self
    }

    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    pub fn subject(mut self, subject: Option<Path>) -> Self {
        self.subject = subject;
        self
    }
}

/// `text` cut to at most `max` bytes at a character boundary, saying how
/// long it was: how untrusted text (a note, a message) enters the tree.
pub fn capped(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}… (cut from {} bytes)", &text[..at], text.len()).into()
}

/// The longest message a failed call's outcome carries into its fact, in
/// bytes (the wasm ABI's outcome limit); longer messages are cut.
pub const OUTCOME_MESSAGE_BYTES_MAX: usize = 64 << 10;

/// Writes `fact` into the mailbox of `tree` and prunes the oldest facts
/// beyond `facts_max`. Returns the fact's path.
pub(crate) fn record(
    tree: &mut WorkTree,
    fact: &Fact,
    beat: u64,
    facts_max: usize,
) -> Result<Path, TreeError> {
    let mailbox = mailbox();
    let name = tree.append(&mailbox, Value::text(&fact.topic))?;
    let at = mailbox.child(name);
    let field = |n: &str| at.child(Name::new(n).expect("static field name"));
    tree.write(&field("sev"), Value::text(fact.severity.as_str()))?;
    tree.write(&field("topic"), Value::text(&fact.topic))?;
    tree.write(&field("note"), Value::text(&fact.note))?;
    tree.write(&field("origin"), Value::text(&fact.origin))?;
    let subject = fact
        .subject
        .as_ref()
        .map(Path::to_string)
        .unwrap_or_default();
    tree.write(&field("subject"), Value::from(subject))?;
    tree.write(&field("beat"), Value::I64(beat as i64))?;
    tree.keep_newest(&mailbox, facts_max)?;
    Ok(at)
}

pub(crate) fn mailbox() -> Path {
    Path::parse(MAILBOX).expect("static path")
}

/// Reads every fact in the mailbox of a snapshot, oldest first.
pub fn facts(snapshot: &crate::cell::Snapshot) -> Vec<(Fact, u64)> {
    let Some(mailbox) = snapshot.node(&mailbox()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    mailbox.for_each_child(&mut |_, node| {
        let text = |field: &str| {
            node.child(field)
                .and_then(|n| n.value())
                .and_then(Value::as_text)
                .unwrap_or_default()
                .to_owned()
        };
        let Ok(severity) = text("sev").parse() else {
            return;
        };
        let subject = text("subject");
        let beat = node
            .child("beat")
            .and_then(|n| n.value())
            .and_then(Value::as_i64)
            .unwrap_or(0);
        out.push((
            Fact {
                severity,
                topic: text("topic"),
                note: text("note"),
                origin: text("origin"),
                subject: Path::parse(&subject).ok().filter(|_| !subject.is_empty()),
                op: None,
            },
            beat as u64,
        ));
    });
    out
}
