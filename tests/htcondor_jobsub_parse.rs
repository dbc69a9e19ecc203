//! HTCondor's and jobsub_lite's output read by prodops's parsers (X10):
//! every sample in `tests/fixtures/`, malformed input, and arbitrary bytes
//! (never a panic: a value or a clear error); launch scripts' output (J9).

use prodops::batch::htcondor::parse::{
    job_states, parse_ads, parse_event_log, parse_submit, JobStatus, Termination,
};
use prodops::batch::jobsub::parse::{self as jobsub, JobsubId};
use prodops::batch::launch;
use proptest::prelude::*;

fn sample(path: &str) -> String {
    let path = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn x10_the_event_log_of_a_job_reads_submit_execute_and_normal_termination() {
    let events = parse_event_log(&sample("htcondor/test_event_reader.log")).events;
    let codes: Vec<u16> = events.iter().map(|e| e.code).collect();
    assert_eq!(codes, [0, 1, 6, 8, 6, 5, 6]);
    assert!(events.iter().all(|e| (e.cluster, e.proc) == (23515, 0)));
    assert_eq!(events[0].time, "04/09 17:44:53");
    assert_eq!(events[3].text, "Job indicated transition to phase: output");
    assert_eq!(events[5].termination(), Some(Termination::Exited(0)));
    assert!(events[2].detail[1].contains("ResidentSetSize of job (KB)"));
}

#[test]
fn x10_the_event_log_alone_tells_each_jobs_last_state() {
    let ended = job_states(&parse_event_log(&sample("htcondor/test_event_reader.log")).events);
    let job = &ended[&(23515, 0)];
    assert_eq!((job.status, job.exit_code), (JobStatus::Completed, Some(0)));
    let aborted =
        job_states(&parse_event_log(&sample("htcondor/job_core_copytospool_van.log")).events);
    let statuses: Vec<_> = aborted.iter().map(|(id, ad)| (*id, ad.status)).collect();
    assert_eq!(
        statuses,
        [
            ((103, 0), JobStatus::Removed),
            ((818, 0), JobStatus::Removed)
        ]
    );
    let held = parse_event_log(
        "000 (7.1.000) 04/09 17:44:53 Job submitted from host: <10.0.0.1:9618>\n...\n012 (7.1.000) 04/09 17:50:00 Job was held.\n\tError from slot1@wn: Job has gone over memory limit of 2048 megabytes.\n\tCode 34 Subcode 0\n...\n",
    )
    .events;
    let held = &job_states(&held)[&(7, 1)];
    assert_eq!(
        (held.status, held.hold_code, held.hold_reason.as_deref()),
        (
            JobStatus::Held,
            Some(34),
            Some("Error from slot1@wn: Job has gone over memory limit of 2048 megabytes.")
        )
    );
}

#[test]
fn x10_aborted_jobs_read_with_their_reason() {
    let events = parse_event_log(&sample("htcondor/job_core_copytospool_van.log")).events;
    let summary: Vec<(u16, i64, &str)> = events
        .iter()
        .map(|e| {
            (
                e.code,
                e.cluster,
                e.detail.first().map(String::as_str).unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (0, 103, ""),
            (9, 103, "via condor_rm (by user bt)"),
            (0, 818, ""),
            (9, 818, "via condor_rm (by user bt)"),
        ]
    );
}

#[test]
fn x10_records_about_no_one_job_are_passed_over_and_the_jobs_of_the_log_keep_their_ends() {
    let log = parse_event_log(&sample("htcondor/late_materialization.log"));
    assert_eq!(log.skipped, [], "negative procs are events, not errors");
    let not_about_a_job: Vec<(u16, i64, i64)> = log
        .events
        .iter()
        .filter(|e| e.job().is_none())
        .map(|e| (e.code, e.cluster, e.proc))
        .collect();
    assert_eq!(
        not_about_a_job,
        [
            (35, 4242, -1),
            (40, 4242, -1000),
            (8, -1, -1),
            (36, 4242, -1)
        ]
    );
    let states = job_states(&log.events);
    let ends: Vec<_> = states
        .iter()
        .map(|(id, ad)| (*id, ad.status, ad.exit_code))
        .collect();
    assert_eq!(
        ends,
        [
            ((4242, 0), JobStatus::Completed, Some(0)),
            ((4242, 1), JobStatus::Completed, Some(3)),
        ],
        "M9: each job keeps its own end; no job is made up of the cluster's records"
    );
}

#[test]
fn x10_one_bad_record_is_reported_and_skipped_and_never_discards_the_log() {
    let text = sample("htcondor/late_materialization.log").replacen(
        "005 (4242.000.000)",
        "0x5 (4242.000.000) garbled\n\t(1) Normal termination (return value 9)\n...\n005 (4242.000.000)",
        1,
    );
    let log = parse_event_log(&text);
    let said: Vec<String> = log.skipped.iter().map(|e| e.to_string()).collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with("event log line 16: not an event: `0x5 (4242.000.000) garbled"),
        "{said:?}"
    );
    let states = job_states(&log.events);
    assert_eq!(
        states[&(4242, 0)].exit_code,
        Some(0),
        "the bad record's detail is skipped with it"
    );
    assert_eq!(states[&(4242, 1)].exit_code, Some(3));

    let headerless = parse_event_log(
        "garbage\n000 (9.0.0) 05/26 09:00:00 Job submitted from host: <10.0.0.1:9618>\n...\n",
    );
    assert_eq!(headerless.skipped.len(), 1);
    assert_eq!(
        headerless.events.len(),
        1,
        "an event right after a bad line is read, though no `...` closed the bad one"
    );
}

#[test]
fn d1_a_job_killed_by_a_signal_then_aborted_failed_by_that_signal() {
    let states = job_states(&parse_event_log(&sample("htcondor/signal_then_aborted.log")).events);
    let job = &states[&(5120, 0)];
    assert_eq!(
        (job.status, job.exit_signal, job.exit_code),
        (JobStatus::Completed, Some(11), None),
        "the 009 after the 005 does not make it removed"
    );
}

#[test]
fn d1_a_hold_keeps_its_code_and_subcode() {
    let log = parse_event_log(&sample("htcondor/exec_format_hold.log"));
    let job = &job_states(&log.events)[&(6001, 0)];
    assert_eq!(
        (job.status, job.hold_code, job.hold_subcode),
        (JobStatus::Held, Some(6), Some(8))
    );
    assert!(job
        .hold_reason
        .as_deref()
        .is_some_and(|r| r.ends_with("(errno=8: 'Exec format error')")));
}

#[test]
fn d1_a_job_released_from_an_out_of_memory_hold_forgets_the_hold_and_ends_by_its_exit() {
    let log = parse_event_log(&sample("htcondor/oom_released_then_failed.log"));
    let job = &job_states(&log.events)[&(7300, 0)];
    assert_eq!(
        (job.status, job.exit_code),
        (JobStatus::Completed, Some(65))
    );
    assert_eq!(
        (job.hold_code, job.hold_subcode, job.hold_reason.as_deref()),
        (None, None, None),
        "the hold ended with its release (013)"
    );
}

#[test]
fn x10_a_job_whose_reconnect_failed_is_back_in_the_queue_until_it_runs_again() {
    let text = sample("htcondor/reconnect_failed.log");
    let job = &job_states(&parse_event_log(&text).events)[&(8800, 0)];
    assert_eq!(job.status, JobStatus::Idle);
    assert_eq!(
        job.requeued.as_deref(),
        Some("disconnected, reconnect failed (Job disconnected too long: JobLeaseDuration (2400 seconds) expired): requeued")
    );
    let ran_again = format!(
        "{text}001 (8800.000.000) 05/30 03:50:02 Job executing on host: <10.42.0.30:9618>\n...\n"
    );
    let job = &job_states(&parse_event_log(&ran_again).events)[&(8800, 0)];
    assert_eq!(
        (job.status, job.requeued.as_deref()),
        (JobStatus::Running, None)
    );
}

#[test]
fn m9_a_restarted_running_job_is_on_the_host_it_runs_on_now() {
    let ad = &parse_ads(&sample("htcondor/condor_q-restarted.json")).unwrap()[0];
    assert_eq!(ad.status, JobStatus::Running);
    assert_eq!(
        ad.node.as_deref(),
        Some("fnpc7104.fnal.gov"),
        "RemoteHost, not the last run's LastRemoteHost"
    );
    let ended = parse_ads(
        r#"[{"ClusterId": 7300, "ProcId": 0, "JobStatus": 4, "ExitCode": 0, "LastRemoteHost": "slot1_1@fnpc7104.fnal.gov"}]"#,
    )
    .unwrap();
    assert_eq!(ended[0].node.as_deref(), Some("fnpc7104.fnal.gov"));
}

#[test]
fn x10_a_periodic_release_and_the_time_of_the_status_are_read_from_the_ad() {
    let ad = &parse_ads(&sample("htcondor/condor_q-restarted.json")).unwrap()[0];
    assert!(ad.release_policy);
    assert_eq!(ad.status_since, Some(1_780_053_070));
    for (policy, releases) in [
        ("false", false),
        ("null", false),
        ("true", true),
        ("0", false),
        (r#""\/Expr(NumJobStarts < 3)\/""#, true),
    ] {
        let ad = &parse_ads(&format!(
            r#"[{{"ClusterId": 1, "ProcId": 0, "JobStatus": 5, "PeriodicRelease": {policy}}}]"#
        ))
        .unwrap()[0];
        assert_eq!(ad.release_policy, releases, "PeriodicRelease = {policy}");
    }
    let none = &parse_ads(r#"[{"ClusterId": 1, "ProcId": 0, "JobStatus": 5}]"#).unwrap()[0];
    assert!(!none.release_policy);
}

#[test]
fn x10_job_ads_read_status_exit_code_host_site_and_resources() {
    let ads = parse_ads(&sample("htcondor/condor_q-completed.json")).unwrap();
    let ad = &ads[0];
    assert_eq!(
        (ad.cluster, ad.proc, ad.status),
        (12345, 0, JobStatus::Completed)
    );
    assert_eq!(ad.exit_code, Some(0));
    assert_eq!(ad.node.as_deref(), Some("fnpc1234.fnal.gov"));
    assert_eq!(ad.site.as_deref(), Some("FermiGrid"));
    assert_eq!((ad.wall_seconds, ad.cpu_seconds), (Some(125.0), Some(98.0)));
    assert_eq!(ad.rss_kb, Some(1_572_864));
    assert_eq!(
        ad.global_id.as_deref(),
        Some("jobsub01.fnal.gov#12345.0#1700000000")
    );

    let held = &parse_ads(&sample("htcondor/condor_q-held.json")).unwrap()[0];
    assert_eq!(held.status, JobStatus::Held);
    assert_eq!((held.hold_code, held.hold_subcode), (Some(34), Some(0)));
    assert!(held
        .hold_reason
        .as_deref()
        .unwrap()
        .contains("memory limit"));
    assert_eq!(parse_ads("").unwrap(), [], "empty output: no jobs");
}

#[test]
fn x10_a_job_killed_by_a_signal_has_no_exit_code() {
    let ads = parse_ads(
        r#"[{"ClusterId": 7, "ProcId": 2, "JobStatus": 4, "ExitBySignal": true, "ExitSignal": 9, "ExitCode": null,
             "LastRemoteHost": "\/Expr(undefined)\/"}]"#,
    )
    .unwrap();
    assert_eq!((ads[0].exit_code, ads[0].exit_signal), (None, Some(9)));
    assert_eq!(ads[0].node, None, "an expression is not a value");
}

#[test]
fn x10_condor_submit_and_jobsub_submit_report_their_jobs() {
    assert_eq!(
        parse_submit("Submitting job(s)..........\n10 job(s) submitted to cluster 4242.\n"),
        Ok((4242, 10))
    );
    let ids = jobsub::parse_submit(
        "Submitting job(s)..\n2 job(s) submitted to cluster 66882383.\n\nUse job id 66882383.0@jobsub02.fnal.gov to retrieve output\n",
    )
    .unwrap();
    assert_eq!(
        ids,
        [
            "66882383.0@jobsub02.fnal.gov".parse::<JobsubId>().unwrap(),
            "66882383.1@jobsub02.fnal.gov".parse().unwrap(),
        ]
    );
}

#[test]
fn x10_jobsub_q_reads_every_job_with_its_status() {
    let jobs = jobsub::parse_queue(&sample("jobsub/jq_out.txt")).unwrap();
    let lines = sample("jobsub/jq_out.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    assert_eq!(jobs.len(), lines, "one job per line of the sample");
    let first = &jobs[0];
    assert_eq!(first.id.to_string(), "66882383.0@jobsub02.fnal.gov");
    assert_eq!((first.owner.as_str(), first.status), ("user1", 'I'));
    assert_eq!(first.command, "submission_test_stashcache.sh");
    let count = |st: char| jobs.iter().filter(|j| j.status == st).count();
    assert!(count('R') > 0 && count('H') > 0 && count('C') > 0);
    let held = jobs
        .iter()
        .find(|j| j.id.to_string() == "68785875.0@jobsub02.fnal.gov")
        .unwrap();
    assert_eq!(held.command, "gen-vd-v09_72_01d00.sh --group dune -g -c w");
}

#[test]
fn malformed_output_is_a_clear_error_naming_what_is_wrong() {
    let log = sample("htcondor/test_event_reader.log");
    let half = parse_event_log(&log[..log.len() / 2]);
    assert!(
        half.skipped.is_empty() && !half.events.is_empty(),
        "a record cut off at the end (still being written) is left for later"
    );
    for (text, expect) in [
        ("garbage line\n...\n", "event log line 1: not an event"),
        ("...\n", "event log line 1: `...` outside a record"),
        ("005 (1.0.0) nodate\n...\n", "not an event"),
    ] {
        let read = parse_event_log(text);
        let said: Vec<String> = read.skipped.iter().map(|e| e.to_string()).collect();
        assert!(
            read.events.is_empty() && said.len() == 1 && said[0].contains(expect),
            "{expect:?} not in {said:?}"
        );
    }
    for (text, expect) in [
        ("[{\"ClusterId\": 1", "unreadable job ads"),
        ("{\"ClusterId\": 1}", "not a JSON array"),
        (
            "[{\"ClusterId\": 1, \"ProcId\": 0, \"JobStatus\": 9}]",
            "JobStatus (1–7)",
        ),
        ("[{\"ProcId\": 0, \"JobStatus\": 1}]", "ClusterId"),
    ] {
        let e = parse_ads(text).unwrap_err().to_string();
        assert!(e.contains(expect), "{expect:?} not in {e:?}");
    }
    let e = jobsub::parse_queue(
        "66882383.0@jobsub02.fnal.gov user1 03/30 11:38 0+00:00:00 Q 0 0.0 x.sh",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "jobsub_q line 1: unknown status (U I R X C H E)");
    assert!(jobsub::parse_queue("hello there").is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_event_log(&text);
        let _ = parse_ads(&text);
        let _ = parse_submit(&text);
        let _ = jobsub::parse_submit(&text);
        let _ = jobsub::parse_queue(&text);
    }

    #[test]
    fn mutated_real_samples_never_panic_the_parsers(
        file in prop::sample::select(vec![
            "htcondor/test_event_reader.log",
            "htcondor/job_core_copytospool_van.log",
            "htcondor/late_materialization.log",
            "htcondor/signal_then_aborted.log",
            "htcondor/exec_format_hold.log",
            "htcondor/oom_released_then_failed.log",
            "htcondor/reconnect_failed.log",
            "htcondor/condor_q-restarted.json",
            "htcondor/condor_q-completed.json",
            "htcondor/condor_q-held.json",
            "jobsub/jq_out.txt",
        ]),
        cut in 0usize..200_000,
        position in 0usize..200_000,
        byte in any::<u8>(),
    ) {
        let mut bytes = sample(file).into_bytes();
        let at = position % bytes.len();
        bytes[at] = byte;
        bytes.truncate(cut.max(1).min(bytes.len()));
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_event_log(&text);
        let _ = parse_ads(&text);
        let _ = jobsub::parse_queue(&text);
        for pattern in LAUNCH_PATTERNS {
            let _ = launch::job_id(&text, pattern);
        }
    }

    #[test]
    fn x10_a_garbled_record_between_any_two_records_costs_only_itself(
        file in prop::sample::select(vec![
            "htcondor/test_event_reader.log",
            "htcondor/late_materialization.log",
            "htcondor/oom_released_then_failed.log",
            "htcondor/reconnect_failed.log",
        ]),
        at in 0usize..64,
        garbage in "[a-z0-9 ().:-]{1,40}",
    ) {
        let text = sample(file);
        let whole = parse_event_log(&text);
        let ends: Vec<usize> = text.match_indices("...\n").map(|(i, _)| i + 4).collect();
        let cut = if at % (ends.len() + 1) == 0 { 0 } else { ends[at % (ends.len() + 1) - 1] };
        let line = format!("x{garbage}");
        let spoiled = format!("{}{line}\n\tdetail\n...\n{}", &text[..cut], &text[cut..]);
        let read = parse_event_log(&spoiled);
        prop_assert_eq!(read.events, whole.events);
        prop_assert_eq!(read.skipped.len(), 1);
    }

    #[test]
    fn j9_launch_script_output_gives_an_id_or_a_clear_error(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        pattern in prop::sample::select(LAUNCH_PATTERNS.to_vec()),
    ) {
        let text = String::from_utf8_lossy(&bytes);
        match launch::job_id(&text, pattern) {
            Ok(id) => prop_assert!(!id.is_empty() && text.contains(id.as_str())),
            Err(e) => prop_assert!(e.to_string().starts_with("the launch script printed no job id")),
        }
    }

    #[test]
    fn j9_arbitrary_patterns_never_panic(pattern in ".{0,40}", text in ".{0,200}") {
        let _ = launch::job_id(&text, &pattern);
    }
}

/// Patterns launch scripts' output is read with: the backends' defaults and typical ones.
const LAUNCH_PATTERNS: [&str; 4] = [
    r"Use job id (\S+@\S+) to retrieve output",
    r"(?m)^\s*(\d+\.\d+)\b",
    r"Submitted batch job (\d+)",
    r"\d+",
];

#[test]
fn j9_launch_scripts_answering_like_jobsub_and_condor_submit_terse_give_their_ids() {
    let jobsub_out = "Attempting to get token from https://htvaultprod.fnal.gov:8200 ... succeeded\nSubmitting job(s).\n1 job(s) submitted to cluster 66882383.\n\nUse job id 66882383.0@jobsub02.fnal.gov to retrieve output\n";
    assert_eq!(
        launch::job_id(jobsub_out, LAUNCH_PATTERNS[0]).unwrap(),
        "66882383.0@jobsub02.fnal.gov"
    );
    assert_eq!(
        launch::job_id("812.0 - 812.0\n", LAUNCH_PATTERNS[1]).unwrap(),
        "812.0"
    );
    assert!(launch::job_id(
        "Error: condor_submit exited with failed status code 1",
        LAUNCH_PATTERNS[0]
    )
    .is_err());
}
