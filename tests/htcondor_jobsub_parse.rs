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
    let events = parse_event_log(&sample("htcondor/test_event_reader.log")).unwrap();
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
    let ended = job_states(&parse_event_log(&sample("htcondor/test_event_reader.log")).unwrap());
    let job = &ended[&(23515, 0)];
    assert_eq!((job.status, job.exit_code), (JobStatus::Completed, Some(0)));
    let aborted =
        job_states(&parse_event_log(&sample("htcondor/job_core_copytospool_van.log")).unwrap());
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
    .unwrap();
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
    let events = parse_event_log(&sample("htcondor/job_core_copytospool_van.log")).unwrap();
    let summary: Vec<(u16, u64, &str)> = events
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
    assert!(
        parse_event_log(&log[..log.len() / 2]).is_ok(),
        "a record cut off at the end (still being written) is left for later"
    );
    for (text, expect) in [
        ("garbage line\n...\n", "event log line 1: not an event"),
        ("...\n", "event log line 1: `...` outside a record"),
        ("005 (1.0.0) nodate\n...\n", "not an event"),
    ] {
        let e = parse_event_log(text).unwrap_err().to_string();
        assert!(e.contains(expect), "{expect:?} not in {e:?}");
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
