//! The shape of the source: no module imports a sibling that imports it
//! back (at any level of `host/src` and `sdk/src`), no source file over
//! 900 lines, and every `unsafe` block or impl says why it is sound, in a `// SAFETY:`
//! comment on its line or right above it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cep_tests::plugins::workspace;

const LINES_MAX: usize = 900;

/// Every `.rs` file below `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A file holding tests only (`tests.rs`, `*_tests.rs`).
fn is_test_file(path: &Path) -> bool {
    let stem = path.file_stem().unwrap().to_string_lossy();
    stem == "tests" || stem.ends_with("_tests")
}

/// The module path of a source file under `root` (`cell/work/mod.rs` →
/// `[cell, work]`; `lib.rs` → `[]`).
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

/// The code of a file without comments, string contents and its
/// `#[cfg(test)] mod tests` block.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a file's code refers to (`crate::a::b`, `super::c`,
/// `self::d`, and each item of a `use` group), made absolute.
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let bytes: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == ':');
        if !starts_word || !ident(bytes[i]) {
            i += 1;
            continue;
        }
        // One path: identifiers joined by `::`, maybe ending in a group.
        let mut segments: Vec<String> = Vec::new();
        let mut group: Option<String> = None;
        loop {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            segments.push(bytes[start..i].iter().collect());
            if bytes.get(i) == Some(&':') && bytes.get(i + 1) == Some(&':') {
                i += 2;
                if bytes.get(i) == Some(&'{') {
                    let mut depth = 0;
                    let start = i + 1;
                    while i < bytes.len() {
                        match bytes[i] {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    group = Some(bytes[start..i.min(bytes.len())].iter().collect());
                    break;
                }
                if bytes.get(i).is_some_and(|&c| ident(c)) {
                    continue;
                }
            }
            break;
        }
        let mut base: Vec<String> = match segments[0].as_str() {
            "crate" => Vec::new(),
            "super" => module[..module.len().saturating_sub(1)].to_vec(),
            "self" => module.to_vec(),
            _ => continue,
        };
        for segment in &segments[1..] {
            if segment == "super" {
                base.pop();
            } else {
                base.push(segment.clone());
            }
        }
        match group {
            None => out.push(base),
            Some(items) => {
                // The first identifier of each top-level item.
                let mut depth = 0;
                let mut item = String::new();
                for c in items.chars().chain([',']) {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            let first: String =
                                item.trim().chars().take_while(|&c| ident(c)).collect();
                            if !first.is_empty() && first != "self" {
                                let mut path = base.clone();
                                path.push(first);
                                out.push(path);
                            } else if first == "self" {
                                out.push(base.clone());
                            }
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
            }
        }
    }
    out
}

/// Checks every directory level of the crate at `root` for cycles among
/// sibling modules; returns the cycles found.
fn cycles(root: &Path) -> Vec<String> {
    let files = sources(root);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(root, f)).collect();
    // Edges between siblings: (parent, from, to).
    let mut edges: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        if is_test_file(file) {
            continue;
        }
        let module = module_of(root, file);
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for target in references(&module, &code) {
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common >= module.len() || common >= target.len() {
                continue; // an ancestor or a descendant
            }
            let parent = module[..common].to_vec();
            let mut sibling = parent.clone();
            sibling.push(target[common].clone());
            if !modules.contains(&sibling) {
                continue; // an item of the parent, not a module
            }
            edges
                .entry(parent)
                .or_default()
                .entry(module[common].clone())
                .or_default()
                .insert(target[common].clone());
        }
    }
    let mut found = Vec::new();
    for (parent, graph) in &edges {
        // Depth-first search for a back edge.
        fn visit(
            node: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            found: &mut Vec<Vec<String>>,
        ) {
            if let Some(at) = path.iter().position(|n| n == node) {
                let mut cycle = path[at..].to_vec();
                cycle.push(node.to_owned());
                found.push(cycle);
                return;
            }
            if !done.insert(node.to_owned()) {
                return;
            }
            path.push(node.to_owned());
            for next in graph.get(node).into_iter().flatten() {
                visit(next, graph, path, done, found);
            }
            path.pop();
        }
        let mut done = BTreeSet::new();
        let mut here = Vec::new();
        for node in graph.keys() {
            visit(node, graph, &mut Vec::new(), &mut done, &mut here);
        }
        for cycle in here {
            found.push(format!("{}: {}", parent.join("::"), cycle.join(" -> ")));
        }
    }
    found
}

#[test]
fn no_module_imports_a_sibling_that_imports_it_back() {
    for krate in ["host/src", "sdk/src"] {
        let found = cycles(&workspace().join(krate));
        assert!(found.is_empty(), "{krate}: import cycles {found:#?}");
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(root.join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::create_dir(root.join("b")).unwrap();
    std::fs::write(root.join("b/mod.rs"), "mod c;\npub struct B;\n").unwrap();
    std::fs::write(root.join("b/c.rs"), "use super::super::a::A;\n").unwrap();
    assert_eq!(cycles(root), [": a -> b -> a"]);
}

#[test]
fn no_source_file_is_longer_than_900_lines() {
    for krate in ["host/src", "sdk/src"] {
        for file in sources(&workspace().join(krate)) {
            if is_test_file(&file) {
                continue;
            }
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            assert!(
                lines <= LINES_MAX,
                "{}: {lines} lines (at most {LINES_MAX})",
                file.display()
            );
        }
    }
}

#[test]
fn every_unsafe_block_says_why_it_is_sound() {
    let mut missing = Vec::new();
    for krate in ["host/src", "sdk/src", "ffi/src"] {
        for file in sources(&workspace().join(krate)) {
            let text = std::fs::read_to_string(&file).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let unsafe_block = code.contains("unsafe {") || code.contains("unsafe impl ");
                // On the line, or in the comment lines right above it.
                let said = line.contains("SAFETY:")
                    || lines[..i]
                        .iter()
                        .rev()
                        .take_while(|l| l.trim_start().starts_with("//"))
                        .any(|l| l.contains("SAFETY:"));
                if unsafe_block && !said {
                    missing.push(format!("{}:{}", file.display(), i + 1));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "unsafe without a SAFETY comment: {missing:#?}"
    );
}
