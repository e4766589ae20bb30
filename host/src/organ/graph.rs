//! Cycles in a dependency graph: organ dependencies at boot, plugin
//! dependencies at load.

use std::collections::BTreeMap;

/// A cycle in a dependency graph (node → the nodes it depends on), as the
/// list of nodes along it with the first repeated at the end; edges to
/// nodes outside the graph are ignored. Deterministic: the search starts
/// from the smallest node.
pub fn find_cycle(edges: &BTreeMap<&str, Vec<&str>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    for &start in edges.keys() {
        if marks.contains_key(start) {
            continue;
        }
        // Iterative depth-first search keeping the current path.
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::Open);
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let deps = &edges[node];
            if *next < deps.len() {
                let dep = deps[*next];
                *next += 1;
                if !edges.contains_key(dep) {
                    continue;
                }
                match marks.get(dep) {
                    Some(Mark::Open) => {
                        let from = path.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            path[from..].iter().map(|(n, _)| n.to_string()).collect();
                        cycle.push(dep.to_string());
                        return Some(cycle);
                    }
                    Some(Mark::Done) => {}
                    None => {
                        marks.insert(dep, Mark::Open);
                        path.push((dep, 0));
                    }
                }
            } else {
                marks.insert(node, Mark::Done);
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_named_in_order() {
        let edges: BTreeMap<&str, Vec<&str>> = [
            ("a", vec!["b"]),
            ("b", vec!["c", "x"]),
            ("c", vec!["a"]),
            ("d", vec![]),
        ]
        .into_iter()
        .collect();
        assert_eq!(find_cycle(&edges).unwrap(), ["a", "b", "c", "a"]);
        let acyclic: BTreeMap<&str, Vec<&str>> =
            [("a", vec!["b"]), ("b", vec![])].into_iter().collect();
        assert_eq!(find_cycle(&acyclic), None);
    }
}
