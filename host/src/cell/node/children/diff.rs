//! The difference between two committed lists, skipping equal subtrees.

use super::*;

/// Walks two committed lists side by side and calls `on(old, new)` for
/// every name whose entry may differ: `(Some, None)` removed, `(None, Some)`
/// added, `(Some, Some)` present in both but not provably equal. Subtrees
/// with equal hashes are skipped whole; since cuts follow the names,
/// unchanged stretches of the two lists line up.
pub(crate) fn diff<'a>(
    old: &'a Children,
    new: &'a Children,
    on: &mut dyn FnMut(Option<&'a Entry>, Option<&'a Entry>),
) {
    if old.is_log() || new.is_log() {
        return diff_logs(old, new, on);
    }
    /// A node still to visit: its link, level, and hash (none for a root).
    type Pending<'a> = (&'a Link, usize, Option<&'a Hash>);
    struct Stream<'a> {
        /// Nodes still to visit; the next one last.
        stack: Vec<Pending<'a>>,
        /// What is left of the chunk being read.
        entries: &'a [Entry],
    }
    impl<'a> Stream<'a> {
        fn new(children: &'a Children) -> Self {
            Stream {
                stack: children.0.iter().map(|l| (l, l.height(), None)).collect(),
                entries: &[],
            }
        }
        fn node(&self) -> Option<Pending<'a>> {
            if self.entries.is_empty() {
                self.stack.last().copied()
            } else {
                None
            }
        }
        fn expand(&mut self) {
            match self.stack.pop() {
                Some((Link::Group(kids), level, _)) => self.stack.extend(
                    kids.iter()
                        .rev()
                        .map(|k| (&k.link, level - 1, Some(&k.hash))),
                ),
                Some((Link::Chunk(e), ..)) => self.entries = e,
                Some((Link::Open(v), ..)) => self.entries = v,
                Some((Link::Log(_), ..)) => unreachable!("logs are diffed apart"),
                None => {}
            }
        }
        fn entry(&mut self) -> Option<&'a Entry> {
            while self.entries.is_empty() && !self.stack.is_empty() {
                self.expand();
            }
            self.entries.first()
        }
        fn advance(&mut self) {
            self.entries = &self.entries[1..];
        }
    }
    let mut a = Stream::new(old);
    let mut b = Stream::new(new);
    loop {
        if let (Some((x, lx, hx)), Some((y, ly, hy))) = (a.node(), b.node()) {
            let same = x.same_node(y) || (lx == ly && hx.is_some() && hx == hy);
            if same {
                a.stack.pop();
                b.stack.pop();
            } else {
                if lx >= ly {
                    a.expand();
                }
                if ly >= lx {
                    b.expand();
                }
            }
            continue;
        }
        let (x, y) = (a.entry(), b.entry());
        if x.is_none() && y.is_none() {
            return;
        }
        let (next_x, next_y) = merge_step(x, y, on);
        if next_x {
            a.advance();
        }
        if next_y {
            b.advance();
        }
    }
}

/// One step of a merge of two lists of entries in name order: reports
/// the first of `x` and `y` (both, when they have one name and differ) to
/// `on`, and says which side(s) to move past.
pub(super) fn merge_step<'a>(
    x: Option<&'a Entry>,
    y: Option<&'a Entry>,
    on: &mut dyn FnMut(Option<&'a Entry>, Option<&'a Entry>),
) -> (bool, bool) {
    let order = match (x, y) {
        (None, None) => return (false, false),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => x.name.cmp(&y.name),
    };
    match order {
        std::cmp::Ordering::Less => {
            on(x, None);
            (true, false)
        }
        std::cmp::Ordering::Greater => {
            on(None, y);
            (false, true)
        }
        std::cmp::Ordering::Equal => {
            let (x, y) = (x.expect("equal names"), y.expect("equal names"));
            if !same_entry(x, y) {
                on(Some(x), Some(y));
            }
            (true, true)
        }
    }
}

/// [`diff`] where one side or both are logs: entries trimmed from a log's
/// front and entries with equal links are skipped without a look; the
/// rest (usually an entry or two at the end) are merged by name.
pub(super) fn diff_logs<'a>(
    old: &'a Children,
    new: &'a Children,
    on: &mut dyn FnMut(Option<&'a Entry>, Option<&'a Entry>),
) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    match (old.log(), new.log()) {
        (Some(x), Some(y)) if let Some((trimmed, same)) = x.continued_by(y) => {
            (0..trimmed).for_each(|i| on(Some(x.entry(i)), None));
            xs.extend((trimmed + same..x.len()).map(|i| x.entry(i)));
            ys.extend((same..y.len()).map(|i| y.entry(i)));
        }
        _ => {
            old.for_each(&mut |e| xs.push(e));
            new.for_each(&mut |e| ys.push(e));
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < xs.len() || j < ys.len() {
        let (next_x, next_y) = merge_step(xs.get(i).copied(), ys.get(j).copied(), on);
        i += usize::from(next_x);
        j += usize::from(next_y);
    }
}

/// Whether `new`, a later state of the log `old`, follows from it by
/// trims, in-place changes and appends (see `Log::continued_by`): a
/// change list of removes and puts then turns one into the other.
pub(crate) fn log_continues(old: &Children, new: &Children) -> bool {
    match (old.log(), new.log()) {
        (Some(x), Some(y)) => x.continued_by(y).is_some(),
        _ => false,
    }
}

/// Whether two committed entries of one name are provably equal.
pub(super) fn same_entry(x: &Entry, y: &Entry) -> bool {
    if x.hash == INLINE || y.hash == INLINE {
        x.hash == y.hash
            && x.node.hashed_flags() == y.node.hashed_flags()
            && x.node.value() == y.node.value()
    } else {
        x.hash == y.hash
    }
}
