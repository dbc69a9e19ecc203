//! docs/requirements.md stays true (issue 16): its TESTS column lists, for
//! each requirement id, the tests that cite it in their names, and no test
//! cites an id the table lacks. `UPDATE_REQUIREMENTS=1` rewrites the column.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The requirement ids a test name cites: its leading `x5_`, `t2_s3_` parts
/// (`i<N>` parts cite the console trial's items, not requirements).
fn cited(name: &str) -> Vec<String> {
    name.split('_')
        .take_while(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.as_str().len() <= 2
                && !chars.as_str().is_empty()
                && chars.as_str().chars().all(|c| c.is_ascii_digit())
        })
        .filter(|part| !part.starts_with('i'))
        .map(str::to_uppercase)
        .collect()
}

/// Every test function (after `#[test]` or `#[tokio::test…]`) by the ids it cites.
fn tests_by_id() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = rust_files(&root().join("tests"));
    files.extend(rust_files(&root().join("src")));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let short = file.strip_prefix(root()).unwrap().display().to_string();
        let mut marked = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("#[test]") || line.starts_with("#[tokio::test") {
                marked = true;
                continue;
            }
            let Some(rest) = line
                .strip_prefix("async fn ")
                .or_else(|| line.strip_prefix("fn "))
            else {
                continue;
            };
            if std::mem::take(&mut marked) {
                let name = rest.split('(').next().unwrap_or(rest).trim();
                for id in cited(name) {
                    out.entry(id)
                        .or_default()
                        .insert(format!("{short}: {name}"));
                }
            }
        }
    }
    out
}

#[test]
fn docs_requirements_lists_the_tests_citing_each_requirement() {
    let path = root().join("docs/requirements.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut tests = tests_by_id();
    let mut known = BTreeSet::new();
    let mut rewritten = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let is_row = cells.len() == 5 && cells[1] != "ID" && !cells[1].starts_with('-');
        if !is_row {
            rewritten.push(line.to_string());
            continue;
        }
        let id = cells[1].to_string();
        let names = tests.remove(&id).unwrap_or_default();
        let column = if names.is_empty() {
            "—".to_string()
        } else {
            names.into_iter().collect::<Vec<_>>().join("<br>")
        };
        rewritten.push(format!("| {id} | {} | {column} |", cells[2]));
        known.insert(id);
    }
    assert!(
        tests.is_empty(),
        "tests cite ids docs/requirements.md lacks: {:?}",
        tests.keys().collect::<Vec<_>>()
    );
    let updated = rewritten.join("\n") + "\n";
    if std::env::var_os("UPDATE_REQUIREMENTS").is_some() {
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        text == updated,
        "docs/requirements.md is out of date: run `UPDATE_REQUIREMENTS=1 cargo test --test requirements_index`"
    );
    assert!(known.len() > 50, "the table lists the requirements");
}

#[test]
fn a_test_name_cites_its_leading_ids_only() {
    assert_eq!(cited("t2_s3_a_campaign_held"), ["T2", "S3"]);
    assert_eq!(cited("x10_the_example"), ["X10"]);
    assert_eq!(cited("i24_readme"), Vec::<String>::new());
    assert_eq!(cited("a_batch_run"), Vec::<String>::new());
    assert_eq!(cited("m9_each_job_records_its_site_node_kind"), ["M9"]);
}
