//! Rejects sources of nondeterminism in the deterministic core: the wall
//! clock, OS randomness, and hash maps (whose iteration order could reach a
//! result). A hash map used for lookups only is allowed when the line above
//! it says `// determinism: lookup only`; a clock reading whose only use is a
//! decision recorded as an input, when it says `// determinism: recorded
//! decision`.

use std::path::Path;

/// The modules whose behaviour reaches the state hash.
const CORE: &[&str] = &[
    "src/cell",
    "src/beat",
    "src/enzyme",
    "src/cei",
    "src/config.rs",
];

const FORBIDDEN: &[(&str, &str)] = &[
    ("Instant::now", "the wall clock"),
    ("SystemTime", "the wall clock"),
    ("thread_rng", "OS randomness"),
    ("rand::", "randomness"),
    ("RandomState", "randomly seeded hashing"),
    ("HashMap", "hash-map iteration order"),
    ("HashSet", "hash-set iteration order"),
];

fn sources(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            sources(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

#[test]
fn the_deterministic_core_uses_no_clock_randomness_or_unmarked_hash_maps() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for part in CORE {
        sources(&root.join(part), &mut files);
    }
    assert!(files.len() > 5, "the lint found too few files: {files:?}");
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (pattern, why) in FORBIDDEN {
                if !code.contains(pattern) {
                    continue;
                }
                let above = if i > 0 { lines[i - 1] } else { "" };
                let is_import = code.trim_start().starts_with("use ");
                if pattern.contains("Hash")
                    && (above.contains("determinism: lookup only") || is_import)
                {
                    continue;
                }
                // A measurement whose only use is a decision recorded as an input.
                if *pattern == "Instant::now" && above.contains("determinism: recorded decision") {
                    continue;
                }
                problems.push(format!(
                    "{}:{}: {pattern} ({why}): {}",
                    file.display(),
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "nondeterminism hazards in the core:\n{}",
        problems.join("\n")
    );
}
