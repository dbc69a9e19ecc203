//! Slurm's output read by prodops's parsers (X10): real 22.05 samples and
//! the 23.02 and 23.11 shapes derived from them, malformed input, and
//! arbitrary bytes (never a panic: a value or a clear error).

use prodops::batch::slurm::parse::{
    end_is_doubtful, parse_accounting, parse_jobs, parse_sbatch, with_accounted_end, AccountedEnd,
    SlurmParseError, SlurmTask,
};
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
        assert_eq!(failed.partition.as_deref(), Some("debug"), "M9: {file}");
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

/// `(task, exit code, signal)` of each task of the real 8-task array of
/// `sacct-22.05-ends.*`, sorted by task.
fn ends(tasks: &[SlurmTask]) -> Vec<(u64, Option<i64>, Option<i64>)> {
    let mut out: Vec<_> = tasks
        .iter()
        .map(|t| (t.task, t.exit_code, t.signal))
        .collect();
    out.sort();
    out
}

/// The real array's tasks from `sacct --json`, with their ends from the real
/// `sacct --parsable2` table where the JSON's are doubtful.
fn merged_real_ends() -> Vec<SlurmTask> {
    let table = parse_accounting(&sample("sacct-22.05-ends.txt")).unwrap();
    parse_jobs(&sample("sacct-22.05-ends.json"))
        .unwrap()
        .into_iter()
        .map(|t| {
            let end = table
                .iter()
                .find(|e| (e.array_id, e.task) == (t.array_id, t.task));
            with_accounted_end(t, end)
        })
        .collect()
}

#[test]
fn d1_sacct_json_of_22_05_reads_the_signal_and_never_a_clean_code_for_a_failed_job() {
    let tasks = parse_jobs(&sample("sacct-22.05-ends.json")).unwrap();
    assert_eq!(
        ends(&tasks),
        [
            (0, None, None),
            (1, None, Some(11)),
            (2, None, None),
            (3, None, None),
            (4, Some(0), None),
            (5, Some(0), None),
            (6, Some(0), None),
            (7, None, None),
        ],
        "22.05 carries the SIGSEGV under signal.signal_id; its 0 of a failed, timed-out or cancelled job is no exit code"
    );
    let doubtful: Vec<u64> = tasks
        .iter()
        .filter(|t| end_is_doubtful(t))
        .map(|t| t.task)
        .collect();
    assert_eq!(
        doubtful,
        [7, 0, 2, 3],
        "asked of sacct --parsable2: {tasks:#?}"
    );
}

#[test]
fn d1_sacct_parsable2_gives_each_task_its_code_or_the_signal_of_its_batch_step() {
    let table = parse_accounting(&sample("sacct-22.05-ends.txt")).unwrap();
    let end = |task: u64, state: &str, exit_code: Option<i64>, signal: Option<i64>| AccountedEnd {
        array_id: 1,
        task,
        state: state.to_string(),
        exit_code,
        signal,
    };
    assert_eq!(
        table,
        [
            end(0, "FAILED", Some(3), None),
            end(1, "FAILED", None, Some(11)),
            end(2, "TIMEOUT", None, Some(15)),
            end(3, "CANCELLED", None, Some(15)),
            end(4, "COMPLETED", Some(0), None),
            end(5, "COMPLETED", Some(0), None),
            end(6, "COMPLETED", Some(0), None),
            end(7, "FAILED", Some(7), None),
        ],
        "a TIMEOUT's and a cancelled job's own row reads 0:0; the signal is on its .batch row"
    );
}

#[test]
fn d1_the_json_and_the_table_together_record_every_real_end() {
    assert_eq!(
        ends(&merged_real_ends()),
        [
            (0, Some(3), None),
            (1, None, Some(11)),
            (2, None, Some(15)),
            (3, None, Some(15)),
            (4, Some(0), None),
            (5, Some(0), None),
            (6, Some(0), None),
            (7, Some(7), None),
        ]
    );
}

/// A table as a cluster with `PrologFlags=Contain` prints it: `.extern`
/// steps, numbered (`srun`) steps, a failure only `DerivedExitCode` shows,
/// a pending range, a job that is not an array, and a cancelled pending task.
const TABLE_WITH_STEPS: &str = "JobID|JobName|State|ExitCode|DerivedExitCode
123_7|prodops-a|FAILED|7:0|0:0
123_7.batch|batch|FAILED|7:0|
123_7.extern|extern|COMPLETED|0:0|
123_2|prodops-a|TIMEOUT|0:0|0:0
123_2.batch|batch|CANCELLED|0:15|
123_2.extern|extern|COMPLETED|0:0|
123_3|prodops-a|FAILED|0:0|2:0
123_3.batch|batch|COMPLETED|0:0|
123_3.extern|extern|COMPLETED|0:0|
123_3.0|hostname|FAILED|2:0|
123_4|prodops-a|CANCELLED by 0|0:0|0:0
123_5|prodops-a|CANCELLED by 999|0:0|0:0
123_5.batch|batch|CANCELLED|0:0|
123_5.extern|extern|CANCELLED|0:9|
123_6|prodops-a|COMPLETED|0:0|0:0
123_6.batch|batch|COMPLETED|0:0|
123_[8-9%2]|prodops-a|PENDING|0:0|0:0
124|prodops-b|OUT_OF_MEMORY|0:0|0:0
124.batch|batch|OUT_OF_MEMORY|0:9|
124.extern|extern|OUT_OF_MEMORY|0:0|
";

#[test]
fn d1_extern_and_numbered_steps_derived_codes_and_pending_ranges_in_sacct_parsable2() {
    let table = parse_accounting(TABLE_WITH_STEPS).unwrap();
    let seen: Vec<_> = table
        .iter()
        .map(|e| (e.array_id, e.task, e.state.as_str(), e.exit_code, e.signal))
        .collect();
    assert_eq!(
        seen,
        [
            (123, 2, "TIMEOUT", None, Some(15)),
            (123, 3, "FAILED", Some(2), None),
            (123, 4, "CANCELLED", None, None),
            (123, 5, "CANCELLED", None, None),
            (123, 6, "COMPLETED", Some(0), None),
            (123, 7, "FAILED", Some(7), None),
            (124, 0, "OUT_OF_MEMORY", None, Some(9)),
        ],
        "the array task 123_7 keeps its code; 123_3's comes from DerivedExitCode; \
         the .extern step's signal is not the job's; a task cancelled while pending \
         has neither code nor signal; the pending range is no task"
    );
}

#[test]
fn sacct_parsable2_without_its_columns_or_with_a_broken_code_is_a_clear_error() {
    for (text, expect) in [
        ("", "no JobID column"),
        ("garbage", "no JobID column"),
        (
            "JobID|State|ExitCode\n1_0|FAILED|3:0",
            "no DerivedExitCode column",
        ),
        (
            "JobID|State|ExitCode|DerivedExitCode\n1_0|FAILED|three|0:0",
            "unreadable exit code `three`",
        ),
    ] {
        let error = parse_accounting(text).unwrap_err().to_string();
        assert!(error.contains(expect), "{expect:?} not in {error:?}");
    }
    let reordered = "State|DerivedExitCode|JobID|ExitCode|JobName\nFAILED|0:0|9_1|4:0|x\n";
    assert_eq!(
        parse_accounting(reordered).unwrap()[0].exit_code,
        Some(4),
        "columns are found by name"
    );
}

/// States in which a job ended without completing.
const UNCLEAN: [&str; 6] = [
    "FAILED",
    "TIMEOUT",
    "CANCELLED",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
];

/// A 22.05 `sacct --json` of one task in `state` whose exit code object
/// says `return_code` and, when given, `signal_id`.
fn json_of_one(state: &str, return_code: Option<i64>, signal: Option<i64>) -> String {
    let mut exit = serde_json::json!({"status": "SUCCESS", "return_code": return_code});
    if let Some(signal) = signal {
        exit["status"] = "SIGNALED".into();
        exit["signal"] = serde_json::json!({"signal_id": signal, "name": "x"});
    }
    serde_json::json!({"jobs": [{
        "job_id": 41, "name": "prodops-x",
        "array": {"job_id": 40, "task_id": 1, "task": null},
        "state": {"current": state, "reason": "None"},
        "exit_code": exit,
    }]})
    .to_string()
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_jobs(&text);
        let _ = parse_sbatch(&text);
        let _ = parse_accounting(&text);
        let _ = parse_accounting(&format!("JobID|State|ExitCode|DerivedExitCode\n{text}"));
    }

    /// D1: whatever the JSON and the table say, a job that did not complete
    /// is never recorded with a clean exit code, and a non-zero code or a
    /// signal either of them has is kept.
    #[test]
    fn d1_a_job_that_did_not_complete_never_gets_a_clean_exit_code(
        state in prop::sample::select(UNCLEAN.to_vec()),
        json_code in prop::option::of(0i64..3),
        json_signal in prop::option::of(prop::sample::select(vec![0i64, 9, 11, 15])),
        rows in proptest::collection::vec((0i64..3, prop::sample::select(vec![0i64, 9, 15])), 3),
    ) {
        let task = parse_jobs(&json_of_one(state, json_code, json_signal)).unwrap().remove(0);
        let table = format!(
            "JobID|State|ExitCode|DerivedExitCode\n40_1|{state}|{}:{}|{}:{}\n40_1.batch|CANCELLED|{}:{}|\n",
            rows[0].0, rows[0].1, rows[2].0, rows[2].1, rows[1].0, rows[1].1
        );
        let accounted = parse_accounting(&table).unwrap();
        let end = with_accounted_end(task.clone(), accounted.first());
        prop_assert!(end.exit_code != Some(0) || end.signal.is_some(), "{end:?}");
        let json_told = task.signal.is_some() || task.exit_code.is_some_and(|c| c != 0);
        let table_told = rows.iter().any(|&(code, signal)| code != 0 || signal != 0);
        if json_told || table_told {
            prop_assert!(end.signal.is_some() || end.exit_code.is_some_and(|c| c != 0), "{task:?} {table} {end:?}");
        }
        if json_told {
            prop_assert_eq!((end.exit_code, end.signal), (task.exit_code, task.signal));
        }
    }

    #[test]
    fn mutated_real_samples_never_panic_the_parsers(
        file in prop::sample::select(vec![
            "squeue-22.05.json",
            "squeue-22.05-held-range.json",
            "sacct-22.05.json",
            "sacct-22.05-ends.json",
            "sacct-22.05-ends.txt",
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
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_jobs(&text);
        let _ = parse_accounting(&text);
    }
}
