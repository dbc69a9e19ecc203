//! The layers of docs/architecture.md, read from the sources (issue 16):
//! SQL only in the store, and no layer importing one above it.

use std::path::{Path, PathBuf};

fn sources(under: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if under.is_file() {
        out.push(under.to_path_buf());
        return out;
    }
    for entry in std::fs::read_dir(under).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

fn src(part: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(part)
}

/// The lines of the files under `part` that mention `needle`, outside comments.
fn mentions(part: &str, needle: &str) -> Vec<String> {
    sources(&src(part))
        .into_iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim_start().starts_with("//") && l.contains(needle))
                .map(|(n, l)| format!("{}:{}: {}", file.display(), n + 1, l.trim()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn sql_is_written_only_in_the_store() {
    for part in [
        "model", "ops", "worker", "batch", "jobrun", "tui", "cli", "config", "bench",
    ] {
        let found = mentions(part, "sqlx");
        assert!(found.is_empty(), "sqlx outside src/store: {found:#?}");
    }
}

#[test]
fn no_layer_imports_one_above_it() {
    let above = |layers: &[&str]| {
        layers
            .iter()
            .map(|l| format!("crate::{l}"))
            .collect::<Vec<_>>()
    };
    let rules: [(&str, Vec<String>); 8] = [
        (
            "model",
            above(&[
                "store", "ops", "worker", "batch", "jobrun", "tui", "cli", "config", "bench",
            ]),
        ),
        (
            "clock.rs",
            above(&["model", "store", "ops", "worker", "batch", "tui", "cli"]),
        ),
        (
            "failpoint.rs",
            above(&["model", "store", "ops", "worker", "batch", "tui", "cli"]),
        ),
        (
            "host.rs",
            above(&["model", "store", "ops", "worker", "batch", "tui", "cli"]),
        ),
        (
            "store",
            above(&["ops", "worker", "batch", "jobrun", "tui", "cli", "bench"]),
        ),
        (
            "batch",
            above(&["store", "ops", "worker", "tui", "cli", "bench"]),
        ),
        (
            "jobrun",
            above(&["store", "ops", "worker", "batch", "tui", "cli", "bench"]),
        ),
        ("ops", above(&["worker", "tui", "cli", "bench"])),
    ];
    for (part, forbidden) in rules {
        for layer in forbidden {
            let found: Vec<String> = mentions(part, &layer)
                .into_iter()
                .filter(|l| !l.contains(&format!("{layer}_")))
                .collect();
            assert!(found.is_empty(), "{part} imports {layer}: {found:#?}");
        }
    }
}
