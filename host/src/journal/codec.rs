//! The journal's records: how a run header, a beat's inputs, its decisions
//! and its state hash become flat-frame records, and back.
//!
//! Fields are length-prefixed (u32 LE) byte strings and LE integers; values
//! use the tags of `cep_ffi` (none 0, null 1, bool 2, i64 3, f64 4, text 5,
//! bytes 6). Documented in `docs/formats.md` ("Beat journal").

use cep_sdk::flat::{Frame, Record};
use cep_sdk::{Path, Value, Word};

use super::{BeatEntry, Decision, PluginRecord, RunHeader};
use crate::cell::Change;
use crate::impulse::{Impulse, Input};

/// Frame type of a run header (first frame of each run).
pub const FRAME_HEADER: u16 = 1;
/// Frame type of one beat.
pub const FRAME_BEAT: u16 = 2;

/// Why a journal record could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal record {key:?}: {reason}")]
pub struct RecordError {
    pub key: String,
    pub reason: String,
}

struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn value(&mut self, v: Option<&Value>) -> &mut Self {
        match v {
            None => self.0.push(0),
            Some(Value::Null) => self.0.push(1),
            Some(Value::Bool(b)) => self.0.extend_from_slice(&[2, *b as u8]),
            Some(Value::I64(i)) => {
                self.0.push(3);
                self.0.extend_from_slice(&i.to_le_bytes());
            }
            Some(Value::F64(f)) => {
                self.0.push(4);
                self.0.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Some(Value::Text(t)) => {
                self.0.push(5);
                self.bytes(t.as_bytes());
            }
            Some(Value::Bytes(b)) => {
                self.0.push(6);
                self.bytes(b);
            }
        }
        self
    }
}

struct Reader<'a> {
    key: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn fail(&self, reason: &str) -> RecordError {
        RecordError {
            key: String::from_utf8_lossy(self.key).into_owned(),
            reason: reason.to_owned(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.rest.len() < n {
            return Err(self.fail("ends early"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], RecordError> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        self.take(n)
    }

    fn text(&mut self) -> Result<&'a str, RecordError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| self.fail("text is not UTF-8"))
    }

    fn value(&mut self) -> Result<Option<Value>, RecordError> {
        let tag = self.take(1)?[0];
        Ok(Some(match tag {
            0 => return Ok(None),
            1 => Value::Null,
            2 => Value::Bool(self.take(1)?[0] != 0),
            3 => Value::I64(i64::from_le_bytes(self.array()?)),
            4 => Value::F64(f64::from_bits(u64::from_le_bytes(self.array()?))),
            5 => Value::text(self.text()?),
            6 => Value::bytes(self.bytes()?),
            _ => return Err(self.fail("unknown value tag")),
        }))
    }

    fn path(&mut self) -> Result<Path, RecordError> {
        let text = self.text()?;
        Path::parse(text).map_err(|e| self.fail(&format!("bad path {text:?}: {e}")))
    }

    fn done(&self) -> Result<(), RecordError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.fail("has trailing bytes"))
        }
    }
}

fn reader<'a>(r: &'a Record) -> Reader<'a> {
    Reader {
        key: &r.key,
        rest: &r.body,
    }
}

/// The frame of a run header.
pub fn header_frame(h: &RunHeader) -> Frame {
    let mut records = vec![
        Record::new("config", h.config.as_bytes()),
        Record::new("config_dir", h.config_dir.as_bytes()),
        Record::new("first_beat", h.first_beat.to_le_bytes()),
        Record::new("hash_format", [h.hash_format]),
        Record::new("plugin_set", h.plugin_set_hash.to_vec()),
    ];
    if let Some(run) = h.run {
        records.push(Record::new("run", run.to_le_bytes()));
    }
    for (i, p) in h.plugins.iter().enumerate() {
        let mut w = Writer(Vec::new());
        w.bytes(p.name.as_bytes())
            .bytes(p.version.as_bytes())
            .bytes(p.file.as_bytes())
            .bytes(&p.file_hash);
        records.push(Record::new(format!("plugin/{i:06}"), w.0));
    }
    if let Some((beat, hash)) = &h.genesis {
        let mut w = Writer(Vec::new());
        w.u64(*beat).bytes(hash);
        records.push(Record::new("genesis", w.0));
    }
    records.sort_by(|a, b| a.key.cmp(&b.key));
    Frame {
        kind: FRAME_HEADER,
        beat: h.first_beat,
        records,
    }
}

/// Reads a run header back.
pub fn read_header(frame: &Frame) -> Result<RunHeader, RecordError> {
    let mut h = RunHeader {
        // Headers without the key were all written under v1.
        hash_format: 1,
        run: None,
        ..RunHeader::default()
    };
    for r in &frame.records {
        let mut rd = reader(r);
        match r.key.as_slice() {
            b"config" => h.config = text_of(r)?,
            b"config_dir" => h.config_dir = text_of(r)?,
            b"hash_format" => match r.body.as_slice() {
                [version] => h.hash_format = *version,
                _ => return Err(rd.fail("not 1 byte")),
            },
            b"first_beat" => {
                h.first_beat = rd.u64()?;
                rd.done()?;
            }
            b"run" => {
                h.run = Some(rd.u64()?);
                rd.done()?;
            }
            b"plugin_set" => {
                h.plugin_set_hash = r
                    .body
                    .as_slice()
                    .try_into()
                    .map_err(|_| rd.fail("not 32 bytes"))?
            }
            b"genesis" => {
                let beat = rd.u64()?;
                let hash = rd
                    .bytes()?
                    .try_into()
                    .map_err(|_| rd.fail("genesis hash is not 32 bytes"))?;
                rd.done()?;
                h.genesis = Some((beat, hash));
            }
            k if k.starts_with(b"plugin/") => {
                let name = rd.text()?.to_owned();
                let version = rd.text()?.to_owned();
                let file = rd.text()?.to_owned();
                let file_hash = rd
                    .bytes()?
                    .try_into()
                    .map_err(|_| rd.fail("file hash is not 32 bytes"))?;
                rd.done()?;
                h.plugins.push(PluginRecord {
                    name,
                    version,
                    file,
                    file_hash,
                });
            }
            _ => return Err(rd.fail("unknown header record")),
        }
    }
    Ok(h)
}

fn text_of(r: &Record) -> Result<String, RecordError> {
    String::from_utf8(r.body.clone()).map_err(|_| reader(r).fail("text is not UTF-8"))
}

/// The frame of one beat of run `run`: `c/<i>` the tree changes, `d/<i>`
/// decisions, `h` the state hash, `i/<i>` the inputs in capture order, `r`
/// the run (so a beat that strays into another run is seen).
pub fn beat_frame(e: &BeatEntry, run: Option<u64>) -> Frame {
    let mut records = Vec::with_capacity(e.changes.len() + e.inputs.len() + e.decisions.len() + 2);
    // Keys in order: c/, d/, h, i/.
    for (i, c) in e.changes.iter().enumerate() {
        records.push(Record::new(format!("c/{i:08}"), change_body(c)));
    }
    for (i, d) in e.decisions.iter().enumerate() {
        let mut w = Writer(Vec::new());
        match d {
            Decision::Reload { file } => {
                w.0.push(1);
                w.bytes(file.as_bytes());
            }
            Decision::Shutdown => w.0.push(2),
            Decision::CpuCancel { eid, used_ns } => {
                w.0.push(3);
                w.bytes(eid.as_bytes()).u64(*used_ns);
            }
        }
        records.push(Record::new(format!("d/{i:08}"), w.0));
    }
    records.push(Record::new("h", e.state_hash.to_vec()));
    for (i, input) in e.inputs.iter().enumerate() {
        let mut w = Writer(Vec::new());
        let signal = input.impulse.signal.to_string();
        w.bytes(input.source.as_str().as_bytes())
            .u64(input.seq)
            .bytes(signal.as_bytes());
        match &input.impulse.target {
            Some(t) => {
                w.0.push(1);
                w.bytes(t.to_string().as_bytes());
            }
            None => w.0.push(0),
        }
        w.value(input.impulse.payload.as_ref());
        records.push(Record::new(format!("i/{i:08}"), w.0));
    }
    if let Some(run) = run {
        records.push(Record::new("r", run.to_le_bytes()));
    }
    Frame {
        kind: FRAME_BEAT,
        beat: e.beat,
        records,
    }
}

/// Reads one beat back.
pub fn read_beat(frame: &Frame) -> Result<BeatEntry, RecordError> {
    let mut e = BeatEntry {
        beat: frame.beat,
        ..BeatEntry::default()
    };
    for r in &frame.records {
        let mut rd = reader(r);
        if r.key.starts_with(b"d/") {
            match rd.take(1)?[0] {
                1 => e.decisions.push(Decision::Reload {
                    file: rd.text()?.to_owned(),
                }),
                2 => e.decisions.push(Decision::Shutdown),
                3 => e.decisions.push(Decision::CpuCancel {
                    eid: rd.text()?.to_owned(),
                    used_ns: rd.u64()?,
                }),
                _ => return Err(rd.fail("unknown decision")),
            }
        } else if r.key.starts_with(b"c/") {
            e.changes.push(read_change(&mut rd)?);
        } else if r.key == b"h" {
            e.state_hash = r
                .body
                .as_slice()
                .try_into()
                .map_err(|_| rd.fail("state hash is not 32 bytes"))?;
            continue;
        } else if r.key == b"r" {
            // The run, checked by the reader ([`beat_run`]).
            rd.u64()?;
        } else if r.key.starts_with(b"i/") {
            let source = Word::new(rd.text()?).map_err(|e| rd.fail(&e.to_string()))?;
            let seq = rd.u64()?;
            let signal = rd.path()?;
            let target = match rd.take(1)?[0] {
                0 => None,
                _ => Some(rd.path()?),
            };
            let payload = rd.value()?;
            e.inputs.push(Input {
                source,
                seq,
                impulse: Impulse {
                    signal,
                    target,
                    payload,
                },
            });
        } else {
            return Err(rd.fail("unknown beat record"));
        }
        rd.done()?;
    }
    Ok(e)
}

/// The run a beat frame says it belongs to (`None`: written before beat
/// frames said).
pub fn beat_run(frame: &Frame) -> Option<u64> {
    let r = frame.records.iter().find(|r| r.key == b"r")?;
    Some(u64::from_le_bytes(r.body.as_slice().try_into().ok()?))
}

/// One tree change: tag 1 remove (path), tag 2 put (path, value, flags
/// byte: bit 0 sealed, bit 1 log; a log's 32-byte base follows).
pub fn change_body(c: &Change) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    match c {
        Change::Remove(path) => {
            w.0.push(1);
            w.bytes(path.to_string().as_bytes());
        }
        Change::Put {
            path,
            value,
            sealed,
            log,
        } => {
            w.0.push(2);
            w.bytes(path.to_string().as_bytes());
            w.value(value.as_ref());
            w.0.push(*sealed as u8 | (log.is_some() as u8) << 1);
            if let Some(base) = log {
                w.0.extend_from_slice(base);
            }
        }
    }
    w.0
}

fn read_change(rd: &mut Reader) -> Result<Change, RecordError> {
    match rd.take(1)?[0] {
        1 => Ok(Change::Remove(rd.path()?)),
        2 => {
            let path = rd.path()?;
            let value = rd.value()?;
            let flags = rd.take(1)?[0];
            if flags > 3 {
                return Err(rd.fail("put flags other than sealed (1) and log (2)"));
            }
            let log = match flags & 2 {
                0 => None,
                _ => Some(rd.array()?),
            };
            Ok(Change::Put {
                path,
                value,
                sealed: flags & 1 != 0,
                log,
            })
        }
        _ => Err(rd.fail("unknown change")),
    }
}

/// Reads a change record's body back (checkpoints store trees this way).
pub fn read_change_record(r: &Record) -> Result<Change, RecordError> {
    let mut rd = reader(r);
    let change = read_change(&mut rd)?;
    rd.done()?;
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(sealed: bool, log: Option<[u8; 32]>) -> Change {
        Change::Put {
            path: Path::parse("/rt/ops/a/history").unwrap(),
            value: Some(Value::text("x")),
            sealed,
            log,
        }
    }

    /// A put record keeps its seal and, for a log, its base.
    #[test]
    fn put_records_carry_the_log_flag_and_base() {
        for change in [
            put(false, None),
            put(true, None),
            put(false, Some([7; 32])),
            put(true, Some([9; 32])),
        ] {
            let record = Record::new("c/00000000".to_string(), change_body(&change));
            assert_eq!(read_change_record(&record).unwrap(), change);
        }
    }

    /// Flag bits other than sealed and log, and a log without its whole
    /// base, are refused with the record named.
    #[test]
    fn put_records_with_unknown_flags_or_a_short_base_are_refused() {
        let mut body = change_body(&put(false, None));
        *body.last_mut().unwrap() = 4;
        let error = read_change_record(&Record::new("c/00000001".to_string(), body)).unwrap_err();
        assert_eq!(error.key, "c/00000001");
        assert!(error.reason.contains("flags"), "{}", error.reason);
        let mut body = change_body(&put(false, Some([1; 32])));
        body.truncate(body.len() - 1);
        assert!(read_change_record(&Record::new("c/00000002".to_string(), body)).is_err());
    }
}
