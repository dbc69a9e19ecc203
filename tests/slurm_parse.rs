//! Slurm's output read by prodops's parsers (X10): real 22.05 samples and
//! the 23.02 and 23.11 shapes derived from them, malformed input, and
//! arbitrary bytes (never a panic: a value or a clear error).

use prodops::batch::slurm::parse::{parse_jobs, parse_sbatch, SlurmParseError, SlurmTask};
use proptest::prelude::*;

fn sample(name: &str) -> String {
    let path = format!("{}/tests/fixtures/slurm/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `(array, task, state, exit code)` of each task, sorted.
fn summary(tasks: &[SlurmTask]) -> Vec<(u64, u64, String, Option<i64>)> {
    let mut out: Vec<_> = tasks
        .iter()
        .map(|t| (t.array_id, t.task, t.state.clone(), t.exit_code))
        .collect();
    out.sort();
    out
}

#[test]
fn x10_squeue_json_of_every_version_lists_array_tasks_with_states_and_exit_codes() {
    for file in ["squeue-22.05.json", "squeue-23.02-derived.json"] {
        let tasks = parse_jobs(&sample(file)).unwrap();
        let ours: Vec<_> = summary(&tasks)
            .into_iter()
            .filter(|(array, ..)| *array == 1)
            .collect();
        assert_eq!(
            ours,
            [
                (1, 0, "COMPLETED".to_string(), Some(0)),
                (1, 1, "COMPLETED".into(), Some(0)),
                (1, 2, "FAILED".into(), Some(3)),
                (1, 3, "COMPLETED".into(), Some(0)),
            ],
            "{file}"
        );
        let failed = tasks
            .iter()
            .find(|t| t.array_id == 1 && t.task == 2)
            .unwrap();
        assert_eq!(failed.reason.as_deref(), Some("NonZeroExitCode"), "{file}");
        assert_eq!(failed.node.as_deref(), Some("vm"), "{file}");
        assert_eq!(failed.name, "prodops-test");
    }
}

#[test]
fn x10_a_pending_range_becomes_one_task_each_and_a_held_task_keeps_its_reason() {
    for file in [
        "squeue-22.05-held-range.json",
        "squeue-23.11-held-range-derived.json",
    ] {
        let tasks = parse_jobs(&sample(file)).unwrap();
        let states: Vec<(u64, String, Option<String>)> = {
            let mut v: Vec<_> = tasks
                .iter()
                .map(|t| (t.task, t.state.clone(), t.reason.clone()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(states.len(), 10, "{file}: {states:?}");
        assert_eq!(states[0], (0, "RUNNING".into(), None), "{file}");
        assert_eq!(
            states[5],
            (5, "PENDING".into(), Some("JobHeldAdmin".into())),
            "{file}"
        );
        assert!(
            states
                .iter()
                .filter(|(t, ..)| *t != 0 && *t != 5)
                .all(|(_, s, r)| s == "PENDING" && r.as_deref() == Some("JobArrayTaskLimit")),
            "{file}: {states:?}"
        );
        assert!(tasks.iter().all(|t| t.array_id == 8));
    }
}

#[test]
fn x10_sacct_json_trusts_the_state_not_the_buggy_exit_code() {
    for file in [
        "sacct-22.05.json",
        "sacct-23.02-derived.json",
        "sacct-23.11-derived.json",
    ] {
        let tasks = parse_jobs(&sample(file)).unwrap();
        assert_eq!(
            summary(&tasks),
            [
                (1, 0, "COMPLETED".to_string(), Some(0)),
                (1, 1, "COMPLETED".into(), Some(0)),
                (1, 2, "FAILED".into(), None),
                (1, 3, "COMPLETED".into(), Some(0)),
            ],
            "{file}: a failed job's reported 0 is sacct's bug, not its code"
        );
    }
}

#[test]
fn malformed_output_is_a_clear_error() {
    let whole = sample("squeue-22.05.json");
    let truncated = &whole[..whole.len() / 2];
    for (text, expect) in [
        (truncated, "unreadable Slurm JSON"),
        ("garbage\nlines", "unreadable Slurm JSON"),
        ("{\"jobs\": 3}", "no `jobs` list"),
        ("{\"jobs\": [{\"name\": \"x\"}]}", "job_id"),
        (
            "{\"errors\": [{\"description\": \"Invalid user\"}], \"jobs\": []}",
            "Slurm reported: Invalid user",
        ),
        (
            "{\"jobs\": [{\"job_id\": 5, \"array_job_id\": 5, \"array_task_id\": null, \"array_task_string\": \"9-1\", \"job_state\": \"PENDING\"}]}",
            "unreadable array range",
        ),
    ] {
        let error = parse_jobs(text).unwrap_err().to_string();
        assert!(error.contains(expect), "{expect:?} not in {error:?}");
    }
    assert!(matches!(
        parse_sbatch("sbatch: error: invalid partition"),
        Err(SlurmParseError::NoJobId(_))
    ));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_jobs(&text);
        let _ = parse_sbatch(&text);
    }

    #[test]
    fn mutated_real_samples_never_panic_the_parsers(
        file in prop::sample::select(vec![
            "squeue-22.05.json",
            "squeue-22.05-held-range.json",
            "sacct-22.05.json",
            "squeue-23.11-held-range-derived.json",
        ]),
        cut in 0usize..30_000,
        position in 0usize..30_000,
        byte in any::<u8>(),
    ) {
        let mut bytes = sample(file).into_bytes();
        if !bytes.is_empty() {
            let at = position % bytes.len();
            bytes[at] = byte;
            bytes.truncate(cut.max(1).min(bytes.len()));
        }
        let _ = parse_jobs(&String::from_utf8_lossy(&bytes));
    }
}
