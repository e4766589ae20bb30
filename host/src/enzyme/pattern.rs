//! Signal patterns: `/`-separated segments where `*` matches one segment and
//! `**` any number of segments (none included).

use std::fmt;

use cep_sdk::{MatchKind, Name, NameError, Path};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Name),
    One,
    Any,
}

/// A parsed signal pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalPattern {
    segments: Vec<Segment>,
}

impl SignalPattern {
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let body = text.strip_prefix('/').unwrap_or(text);
        let mut segments = Vec::new();
        if !body.is_empty() {
            for part in body.split('/') {
                segments.push(match part {
                    "*" => Segment::One,
                    "**" => Segment::Any,
                    _ => Segment::Literal(Name::new(part).map_err(|e| NameError::Path {
                        path: text.to_owned(),
                        reason: e.to_string(),
                    })?),
                });
            }
        }
        Ok(SignalPattern { segments })
    }

    /// Whether the pattern covers `signal` (wholly for `Exact`, a leading
    /// part of it for `Prefix`).
    pub fn matches(&self, signal: &Path, kind: MatchKind) -> bool {
        match_from(&self.segments, signal.names(), kind)
    }

    /// How specific the pattern is, for ordering: more literal segments
    /// first, then more single-segment wildcards (a `*` is narrower than a
    /// `**`).
    pub fn specificity(&self) -> (usize, usize) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        let ones = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::One))
            .count();
        (literals, ones)
    }
}

fn match_from(pattern: &[Segment], signal: &[Name], kind: MatchKind) -> bool {
    match pattern.split_first() {
        None => signal.is_empty() || kind == MatchKind::Prefix,
        Some((Segment::Any, rest)) => {
            (0..=signal.len()).any(|skip| match_from(rest, &signal[skip..], kind))
        }
        Some((segment, rest)) => match signal.split_first() {
            None => false,
            Some((name, tail)) => {
                let here = match segment {
                    Segment::Literal(lit) => lit == name,
                    _ => true,
                };
                here && match_from(rest, tail, kind)
            }
        },
    }
}

impl fmt::Display for SignalPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for s in &self.segments {
            f.write_str("/")?;
            match s {
                Segment::Literal(n) => f.write_str(n.as_str())?,
                Segment::One => f.write_str("*")?,
                Segment::Any => f.write_str("**")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, signal: &str, kind: MatchKind) -> bool {
        SignalPattern::parse(pattern)
            .unwrap()
            .matches(&Path::parse(signal).unwrap(), kind)
    }

    #[test]
    fn exact_patterns_cover_the_whole_signal() {
        assert!(m("a/b", "/a/b", MatchKind::Exact));
        assert!(!m("a/b", "/a/b/c", MatchKind::Exact));
        assert!(!m("a/b/c", "/a/b", MatchKind::Exact));
        assert!(m("a/*", "/a/x", MatchKind::Exact));
        assert!(!m("a/*", "/a", MatchKind::Exact));
        assert!(m("a/**", "/a", MatchKind::Exact));
        assert!(m("a/**/z", "/a/b/c/z", MatchKind::Exact));
        assert!(m("**", "/anything/at/all", MatchKind::Exact));
    }

    #[test]
    fn prefix_patterns_allow_a_leftover_suffix() {
        assert!(m("a", "/a/b/c", MatchKind::Prefix));
        assert!(m("a/*", "/a/b/c", MatchKind::Prefix));
        assert!(!m("b", "/a/b", MatchKind::Prefix));
    }

    #[test]
    fn literals_are_more_specific_than_wildcards() {
        let lit = SignalPattern::parse("a/b").unwrap().specificity();
        let one = SignalPattern::parse("a/*").unwrap().specificity();
        let any = SignalPattern::parse("a/**").unwrap().specificity();
        assert!(lit > one && one > any);
    }
}
