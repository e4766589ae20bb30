//! Cell names, travelling words and paths, with the rules that validate them.
//!
//! - A [`Name`] labels one cell: 1 to [`Name::BYTES_MAX`] bytes of visible
//!   ASCII (`!` to `~`) except `/`. Names compare bytewise; that order is the
//!   order of children everywhere (iteration, hashing, display).
//! - A [`Word`] is an identifier that travels between runtimes (plugin, peer,
//!   mount, provider and transport ids): 1 to [`Word::CHARS_MAX`] characters
//!   of `a-z 0-9 : _ - .`.
//! - A [`Path`] is the sequence of names from the root to a cell, written
//!   `/a/b/c`; the root is `/`.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use smol_str::SmolStr;

/// Why a name, word or path was rejected. Every variant quotes the offending
/// text and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid cell name {name:?}: a name is 1 to 64 bytes of visible ASCII ('!' to '~') without '/'")]
    Name { name: String },
    #[error("invalid word {word:?}: a word is 1 to 11 characters of a-z, 0-9, ':', '_', '-', '.'")]
    Word { word: String },
    #[error("invalid path {path:?}: {reason}")]
    Path { path: String, reason: String },
}

/// The longest excerpt of rejected text an error quotes, in characters.
pub const EXCERPT_CHARS_MAX: usize = 80;

/// `text`, or its first [`EXCERPT_CHARS_MAX`] characters and its length:
/// what an error quotes of input that may be megabytes long.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS_MAX) {
        Some((at, _)) => format!("{}… ({} bytes)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}

/// The name of one cell. Short names (up to 23 bytes) are stored inline,
/// without a heap allocation.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(SmolStr);

impl Name {
    /// The longest name accepted, in bytes.
    pub const BYTES_MAX: usize = 64;

    /// Validates `text` as a cell name.
    pub fn new(text: &str) -> Result<Self, NameError> {
        if Self::is_valid(text) {
            Ok(Name(SmolStr::new(text)))
        } else {
            Err(NameError::Name {
                name: excerpt(text),
            })
        }
    }

    /// Whether `text` follows the name rule.
    pub fn is_valid(text: &str) -> bool {
        !text.is_empty()
            && text.len() <= Self::BYTES_MAX
            && text
                .bytes()
                .all(|b| (b'!'..=b'~').contains(&b) && b != b'/')
    }

    /// A name made from a number, zero-padded to 10 digits so that bytewise
    /// order is numeric order (used for appended children and sequences).
    pub fn from_index(index: u64) -> Self {
        // Written by hand: one is made per appended child and per dossier
        // history entry, and `format!` cost ~800 instructions each.
        let mut digits = [b'0'; 20];
        let mut at = digits.len();
        let mut rest = index;
        while rest > 0 {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let start = at.min(digits.len() - 10);
        let text = std::str::from_utf8(&digits[start..]).expect("ASCII digits");
        Name(SmolStr::new_inline(text))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::new(s)
    }
}

impl TryFrom<&str> for Name {
    type Error = NameError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Name::new(s)
    }
}

/// An identifier that travels between runtimes: 1 to 11 characters of
/// `a-z 0-9 : _ - .`. Every word is also a valid [`Name`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Word(SmolStr);

impl Word {
    /// The longest word accepted, in characters (the seeds' word limit).
    pub const CHARS_MAX: usize = 11;

    pub fn new(text: &str) -> Result<Self, NameError> {
        if Self::is_valid(text) {
            Ok(Word(SmolStr::new(text)))
        } else {
            Err(NameError::Word {
                word: excerpt(text),
            })
        }
    }

    pub fn is_valid(text: &str) -> bool {
        !text.is_empty()
            && text.len() <= Self::CHARS_MAX
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":_-.".contains(&b))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The word as a cell name (always valid).
    pub fn to_name(&self) -> Name {
        Name(self.0.clone())
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl FromStr for Word {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Word::new(s)
    }
}

/// A path from the root: a shared, immutable list of names. Cloning is one
/// reference-count increment.
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct Path(Arc<[Name]>);

impl std::hash::Hash for Path {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with `eq`: equal paths have equal names.
        self.0.hash(state)
    }
}

impl PartialEq for Path {
    fn eq(&self, other: &Self) -> bool {
        // Clones of one path share their names: skip the comparison.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Path {
    /// The longest path accepted, in segments.
    pub const DEPTH_MAX: usize = 64;

    /// The root path `/`.
    pub fn root() -> Self {
        Path(Arc::from(Vec::new()))
    }

    /// Parses `/a/b/c` (the leading `/` is optional; `/` alone is the root).
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let body = text.strip_prefix('/').unwrap_or(text);
        if body.is_empty() {
            return Ok(Self::root());
        }
        let bad = |reason: &str| NameError::Path {
            path: excerpt(text),
            reason: reason.to_owned(),
        };
        let mut names = Vec::new();
        for segment in body.split('/') {
            if segment.is_empty() {
                return Err(bad("empty segment (a doubled or trailing '/')"));
            }
            let name = Name::new(segment).map_err(|e| bad(&e.to_string()))?;
            names.push(name);
        }
        if names.len() > Self::DEPTH_MAX {
            return Err(bad("deeper than 64 segments"));
        }
        Ok(Path(names.into()))
    }

    pub fn from_names(names: Vec<Name>) -> Self {
        Path(names.into())
    }

    pub fn names(&self) -> &[Name] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// This path with `name` appended.
    pub fn child(&self, name: Name) -> Self {
        let mut names = self.0.to_vec();
        names.push(name);
        Path(names.into())
    }

    /// The parent path, or `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        let (_, head) = self.0.split_last()?;
        Some(Path(head.into()))
    }

    /// The last name, or `None` for the root.
    pub fn last(&self) -> Option<&Name> {
        self.0.last()
    }

    /// Whether `self` equals `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &Path) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for name in self.0.iter() {
            f.write_str("/")?;
            f.write_str(name.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

impl FromStr for Path {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_visible_ascii_and_reject_slash_space_and_length() {
        assert!(Name::new("a").is_ok());
        assert!(Name::new("sig_cei:warn~!").is_ok());
        assert!(Name::new(&"x".repeat(64)).is_ok());
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65), "tab\t"] {
            let err = Name::new(bad).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&format!("{bad:?}")), "{text}");
            assert!(text.contains("1 to 64 bytes"), "{text}");
        }
    }

    #[test]
    fn words_are_at_most_eleven_lowercase_characters() {
        assert!(Word::new("peer-01.a:b").is_ok());
        let err = Word::new("peer-identity1").unwrap_err();
        assert!(err.to_string().contains("\"peer-identity1\""));
        assert!(err.to_string().contains("1 to 11 characters"));
        assert!(Word::new("Upper").is_err());
        assert!(Word::new("").is_err());
    }

    #[test]
    fn paths_parse_and_display_round_trip() {
        let p = Path::parse("/data/a/b").unwrap();
        assert_eq!(p.to_string(), "/data/a/b");
        assert_eq!(Path::parse("data/a/b").unwrap(), p);
        assert!(Path::parse("/").unwrap().is_root());
        assert!(Path::parse("/a//b").is_err());
        assert!(Path::parse("/a/").is_err());
        assert!(p.starts_with(&Path::parse("/data").unwrap()));
        assert!(!Path::parse("/datax")
            .unwrap()
            .starts_with(&Path::parse("/data").unwrap()));
        assert_eq!(p.parent().unwrap().to_string(), "/data/a");
    }

    #[test]
    fn index_names_sort_numerically() {
        assert!(Name::from_index(9) < Name::from_index(10));
        assert_eq!(Name::from_index(7).as_str(), "0000000007");
        assert_eq!(Name::from_index(0).as_str(), "0000000000");
        assert_eq!(Name::from_index(9_999_999_999).as_str(), "9999999999");
        // Past ten digits the name simply grows (and still sorts after).
        assert_eq!(Name::from_index(12_345_678_901).as_str(), "12345678901");
        assert_eq!(Name::from_index(u64::MAX).as_str(), u64::MAX.to_string());
        for i in [1u64, 42, 1_000, 123_456_789, 4_294_967_296] {
            assert_eq!(Name::from_index(i).as_str(), format!("{i:010}"));
        }
    }
}
