//! What HTCondor prints, read by pure functions (tested on the samples in
//! `tests/fixtures/htcondor/`): `condor_submit`'s summary, the job ads of
//! `condor_q -json` / `condor_history -json`, and the job event log.

use serde_json::Value;
use std::collections::BTreeMap;

/// Why HTCondor's output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CondorParseError {
    /// `condor_submit` printed no `N job(s) submitted to cluster X.`.
    #[error("condor_submit printed no cluster: `{0}`")]
    NoCluster(String),
    /// The ads are not a JSON array of objects with `ClusterId` and `ProcId`.
    #[error("unreadable job ads: {0}")]
    Ads(String),
    /// A record of the event log is not an event (it is skipped).
    #[error("event log line {line}: {message}")]
    EventLog {
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// `JobStatus` of a job ad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// 1.
    Idle,
    /// 2.
    Running,
    /// 3.
    Removed,
    /// 4.
    Completed,
    /// 5.
    Held,
    /// 6.
    TransferringOutput,
    /// 7.
    Suspended,
}

impl JobStatus {
    fn from_code(code: i64) -> Option<JobStatus> {
        Some(match code {
            1 => JobStatus::Idle,
            2 => JobStatus::Running,
            3 => JobStatus::Removed,
            4 => JobStatus::Completed,
            5 => JobStatus::Held,
            6 => JobStatus::TransferringOutput,
            7 => JobStatus::Suspended,
            _ => return None,
        })
    }
}

/// One job ad, the attributes prodops reads.
#[derive(Debug, Clone, PartialEq)]
pub struct JobAd {
    /// `ClusterId`.
    pub cluster: u64,
    /// `ProcId`.
    pub proc: u64,
    /// `JobStatus`.
    pub status: JobStatus,
    /// `ExitCode` (present only when the job exited, not killed by a signal).
    pub exit_code: Option<i64>,
    /// `ExitSignal` when `ExitBySignal` is true.
    pub exit_signal: Option<i64>,
    /// `HoldReason`.
    pub hold_reason: Option<String>,
    /// `HoldReasonCode` (34: over its memory limit).
    pub hold_code: Option<i64>,
    /// `HoldReasonSubCode`.
    pub hold_subcode: Option<i64>,
    /// The host the job runs on (`RemoteHost`) or last ran on
    /// (`LastRemoteHost`): `slot1_1@host` → `host`.
    pub node: Option<String>,
    /// `MachineAttrGLIDEIN_Site0`.
    pub site: Option<String>,
    /// `RemoteWallClockTime`, seconds.
    pub wall_seconds: Option<f64>,
    /// `RemoteUserCpu`, seconds.
    pub cpu_seconds: Option<f64>,
    /// `ResidentSetSize`, KiB.
    pub rss_kb: Option<i64>,
    /// `NumJobStarts`.
    pub starts: Option<i64>,
    /// `GlobalJobId` (`schedd#cluster.proc#epoch`).
    pub global_id: Option<String>,
    /// `PeriodicRelease` is set to anything but `false`: the schedd may
    /// release the job from a hold by itself.
    pub release_policy: bool,
    /// `EnteredCurrentStatus`: when the job entered its status (Unix seconds).
    pub status_since: Option<i64>,
    /// Why the job is back in the queue, when its event log says
    /// (`reconnect failed: requeued`).
    pub requeued: Option<String>,
}

impl JobAd {
    /// An ad with only its ids and status.
    pub fn new(cluster: u64, proc: u64, status: JobStatus) -> JobAd {
        JobAd {
            cluster,
            proc,
            status,
            exit_code: None,
            exit_signal: None,
            hold_reason: None,
            hold_code: None,
            hold_subcode: None,
            node: None,
            site: None,
            wall_seconds: None,
            cpu_seconds: None,
            rss_kb: None,
            starts: None,
            global_id: None,
            release_policy: false,
            status_since: None,
            requeued: None,
        }
    }
}

/// Reads `N job(s) submitted to cluster X.`: `(X, N)`.
pub fn parse_submit(out: &str) -> Result<(u64, u64), CondorParseError> {
    out.lines()
        .find_map(|line| {
            let line = line.trim();
            let (count, rest) = line.split_once(" job(s) submitted to cluster ")?;
            let cluster = rest.strip_suffix('.')?.trim().parse().ok()?;
            let count = count.trim().parse().ok()?;
            Some((cluster, count))
        })
        .ok_or_else(|| CondorParseError::NoCluster(out.trim().chars().take(200).collect()))
}

/// Reads the ads `condor_q -json` or `condor_history -json` printed (an
/// array; empty output means no jobs). Unknown attributes are ignored;
/// expressions (`"\/Expr(…)\/"`) and `null` (undefined) count as absent.
pub fn parse_ads(text: &str) -> Result<Vec<JobAd>, CondorParseError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| CondorParseError::Ads(e.to_string()))?;
    let ads = value
        .as_array()
        .ok_or_else(|| CondorParseError::Ads("not a JSON array".into()))?;
    ads.iter().map(ad_of).collect()
}

fn ad_of(ad: &Value) -> Result<JobAd, CondorParseError> {
    let int = |key: &str| ad.get(key).and_then(literal_int);
    let float = |key: &str| ad.get(key).and_then(literal_float);
    let text = |key: &str| ad.get(key).and_then(literal_text);
    let missing = |key: &str| CondorParseError::Ads(format!("an ad without a readable {key}"));
    let cluster = int("ClusterId")
        .filter(|n| *n >= 0)
        .ok_or_else(|| missing("ClusterId"))?;
    let proc = int("ProcId")
        .filter(|n| *n >= 0)
        .ok_or_else(|| missing("ProcId"))?;
    let status = int("JobStatus")
        .and_then(JobStatus::from_code)
        .ok_or_else(|| missing("JobStatus (1–7)"))?;
    let by_signal = ad.get("ExitBySignal").and_then(Value::as_bool) == Some(true);
    Ok(JobAd {
        cluster: cluster as u64,
        proc: proc as u64,
        status,
        exit_code: int("ExitCode").filter(|_| !by_signal),
        exit_signal: int("ExitSignal").filter(|_| by_signal),
        hold_reason: text("HoldReason"),
        hold_code: int("HoldReasonCode"),
        hold_subcode: int("HoldReasonSubCode"),
        node: text("RemoteHost")
            .or_else(|| text("LastRemoteHost"))
            .map(|h| h.rsplit('@').next().unwrap_or(&h).to_string()),
        site: text("MachineAttrGLIDEIN_Site0"),
        wall_seconds: float("RemoteWallClockTime"),
        cpu_seconds: float("RemoteUserCpu"),
        rss_kb: int("ResidentSetSize"),
        starts: int("NumJobStarts"),
        global_id: text("GlobalJobId"),
        release_policy: ad.get("PeriodicRelease").is_some_and(releases),
        status_since: int("EnteredCurrentStatus"),
        requeued: None,
    })
}

/// True for a `PeriodicRelease` that may release a job: an expression, or
/// any literal but `false` and undefined.
fn releases(policy: &Value) -> bool {
    match policy {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

/// True for an expression HTCondor could not reduce to a literal.
fn is_expression(s: &str) -> bool {
    s.starts_with("/Expr(") && s.ends_with(")/")
}

fn literal_int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}

fn literal_float(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn literal_text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !is_expression(s)).map(str::to_string)
}

/// One record of a job event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event code (`005` terminated, `012` held, …).
    pub code: u16,
    /// The job's cluster (negative in records about no cluster).
    pub cluster: i64,
    /// Its proc: negative in records about no one job (a cluster's
    /// `035`/`036` under late materialization write `-01`, a transfer
    /// shadow's `-1000`).
    pub proc: i64,
    /// When, as written (`04/09 17:55:38`: the log has no year).
    pub time: String,
    /// The text after the time.
    pub text: String,
    /// The indented detail lines, trimmed.
    pub detail: Vec<String>,
}

/// How a job ended, from a `005` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// `(1) Normal termination (return value N)`.
    Exited(i64),
    /// `(0) Abnormal termination (signal N)`.
    Signalled(i64),
}

impl Event {
    /// `(cluster, proc)` of the one job the record is about; `None` for a
    /// record about a whole cluster or about no job.
    pub fn job(&self) -> Option<(u64, u64)> {
        Some((
            u64::try_from(self.cluster).ok()?,
            u64::try_from(self.proc).ok()?,
        ))
    }

    /// How the job ended, for a terminated (`005`) event.
    pub fn termination(&self) -> Option<Termination> {
        if self.code != 5 {
            return None;
        }
        self.detail.iter().find_map(|line| {
            if let Some(rest) = line.split("(return value ").nth(1) {
                return rest
                    .trim_end_matches(')')
                    .trim()
                    .parse()
                    .ok()
                    .map(Termination::Exited);
            }
            let rest = line.split("(signal ").nth(1)?;
            rest.trim_end_matches(')')
                .trim()
                .parse()
                .ok()
                .map(Termination::Signalled)
        })
    }

    /// The reason and `(code, subcode)` of a held (`012`) event.
    pub fn hold(&self) -> Option<(String, Option<(i64, i64)>)> {
        if self.code != 12 {
            return None;
        }
        let reason = self.detail.first().cloned().unwrap_or_default();
        let codes = self.detail.iter().find_map(|line| {
            let rest = line.strip_prefix("Code ")?;
            let (code, sub) = rest.split_once(" Subcode ")?;
            Some((code.trim().parse().ok()?, sub.trim().parse().ok()?))
        });
        Some((reason, codes))
    }
}

/// A job event log as read: its events and the records that are not
/// events (reported, skipped: one bad record never discards a log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventLog {
    /// The events, in order.
    pub events: Vec<Event>,
    /// Why each skipped record or line is not an event.
    pub skipped: Vec<CondorParseError>,
}

/// Reads a job event log ("user log"): records `NNN (cluster.proc.subproc)
/// MM/DD HH:MM:SS text` (or an ISO date), indented detail lines, each record
/// ended by a line `...`. A record cut off at the end of the file (still
/// being written) is left out; a record whose first line is not an event
/// is skipped up to its `...` (or up to the next line that starts an
/// event), and a stray `...` is skipped, each noted in
/// [`EventLog::skipped`].
pub fn parse_event_log(text: &str) -> EventLog {
    let mut log = EventLog::default();
    let mut open: Option<Event> = None;
    let mut skipping = false;
    for (i, line) in text.lines().enumerate() {
        let at = |message: String| CondorParseError::EventLog {
            line: i + 1,
            message,
        };
        if line.trim() == "..." {
            match open.take() {
                Some(event) => log.events.push(event),
                None if !skipping => log.skipped.push(at("`...` outside a record".into())),
                None => {}
            }
            skipping = false;
        } else if let Some(event) = &mut open {
            event.detail.push(line.trim().to_string());
        } else if !line.trim().is_empty() {
            match parse_header(line) {
                Ok(event) => {
                    open = Some(event);
                    skipping = false;
                }
                Err(message) if !skipping => {
                    log.skipped.push(at(message));
                    skipping = true;
                }
                Err(_) => {}
            }
        }
    }
    log
}

/// Each job's state as its event log tells it (for jobs the schedd has
/// forgotten: no history kept, or history not answering): the last event
/// that changes a state wins, except that nothing after its termination
/// (`005`) changes how a job ended. Records about no one job (negative
/// proc) are passed over.
pub fn job_states(events: &[Event]) -> BTreeMap<(u64, u64), JobAd> {
    let mut jobs: BTreeMap<(u64, u64), JobAd> = BTreeMap::new();
    for event in events {
        let Some((cluster, proc)) = event.job() else {
            continue;
        };
        let ad = jobs
            .entry((cluster, proc))
            .or_insert_with(|| JobAd::new(cluster, proc, JobStatus::Idle));
        if ad.status != JobStatus::Completed {
            apply(ad, event);
        }
    }
    jobs
}

/// What `event` changes in the state of a job that has not terminated
/// (the reason it was requeued lasts until its status changes).
fn apply(ad: &mut JobAd, event: &Event) {
    let requeued = ad.requeued.take();
    match event.code {
        0 | 4 | 7 => ad.status = JobStatus::Idle,
        1 | 11 => ad.status = JobStatus::Running,
        9 => ad.status = JobStatus::Removed,
        10 => ad.status = JobStatus::Suspended,
        5 => {
            ad.status = JobStatus::Completed;
            match event.termination() {
                Some(Termination::Exited(code)) => ad.exit_code = Some(code),
                Some(Termination::Signalled(signal)) => ad.exit_signal = Some(signal),
                None => {}
            }
        }
        12 => {
            ad.status = JobStatus::Held;
            if let Some((reason, codes)) = event.hold() {
                ad.hold_reason = Some(reason);
                ad.hold_code = codes.map(|c| c.0);
                ad.hold_subcode = codes.map(|c| c.1);
            }
        }
        13 => {
            ad.status = JobStatus::Idle;
            ad.hold_reason = None;
            ad.hold_code = None;
            ad.hold_subcode = None;
        }
        24 => {
            ad.status = JobStatus::Idle;
            ad.requeued = Some(reconnect_failed(event));
        }
        _ => ad.requeued = requeued,
    }
}

/// Words for a reconnect-failed (`024`) event: the job left its execute
/// node and waits in the queue to run again.
fn reconnect_failed(event: &Event) -> String {
    match event.detail.first().filter(|reason| !reason.is_empty()) {
        Some(reason) => format!("disconnected, reconnect failed ({reason}): requeued"),
        None => "disconnected, reconnect failed: requeued".to_string(),
    }
}

/// An event's first line.
fn parse_header(line: &str) -> Result<Event, String> {
    let bad = || {
        format!(
            "not an event: `{}`",
            line.chars().take(80).collect::<String>()
        )
    };
    let (code, rest) = line.split_once(' ').ok_or_else(bad)?;
    let code: u16 = code
        .parse()
        .ok()
        .filter(|_| code.len() == 3)
        .ok_or_else(bad)?;
    let rest = rest.trim_start().strip_prefix('(').ok_or_else(bad)?;
    let (id, rest) = rest.split_once(')').ok_or_else(bad)?;
    let mut parts = id.split('.');
    let cluster: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let proc: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let mut words = rest.trim_start().splitn(3, ' ');
    let date = words.next().ok_or_else(bad)?;
    let clock = words.next().ok_or_else(bad)?;
    let dated = date.len() >= 5
        && date
            .chars()
            .all(|c| c.is_ascii_digit() || c == '/' || c == '-');
    if !dated || !clock.contains(':') {
        return Err(bad());
    }
    Ok(Event {
        code,
        cluster,
        proc,
        time: format!("{date} {clock}"),
        text: words.next().unwrap_or("").trim().to_string(),
        detail: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condor_submit_reports_the_cluster_and_count() {
        assert_eq!(
            parse_submit("Submitting job(s)...\n3 job(s) submitted to cluster 812.\n"),
            Ok((812, 3))
        );
        assert!(parse_submit("ERROR: Failed to connect to local queue manager").is_err());
    }

    #[test]
    fn held_and_abnormal_records_read_their_details() {
        let log = "012 (5.000.000) 05/26 09:52:00 Job was held.\n\tError from slot1@wn: Job has gone over memory limit of 2048 megabytes.\n\tCode 34 Subcode 0\n...\n005 (5.001.000) 05/26 09:53:00 Job terminated.\n\t(0) Abnormal termination (signal 9)\n\t(0) No core file\n...\n";
        let events = parse_event_log(log).events;
        assert_eq!(
            events[0].hold(),
            Some((
                "Error from slot1@wn: Job has gone over memory limit of 2048 megabytes.".into(),
                Some((34, 0))
            ))
        );
        assert_eq!(events[1].termination(), Some(Termination::Signalled(9)));
        assert_eq!(events[1].proc, 1);
    }
}
