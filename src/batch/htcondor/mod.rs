//! HTCondor (X10): a job group is one cluster (`queue N`), proc i runs job i
//! of the group; the group's script carries the jobs' specs and prints
//! their records after their output, so the pool needs no shared file
//! system (files are transferred). States come from `condor_q -json`, then
//! `condor_history -json` for jobs that left the queue, then the group's
//! job event log for jobs neither remembers; `condor_rm`, `condor_hold`
//! (a running job is evicted and starts again from the beginning when
//! released), `condor_release` (`condor_continue` for a job someone
//! suspended).
//!
//! Job and group files follow [`super::groups`]; the cluster writes
//! `groups/<group>/<cluster>.<proc>.out`, `.err` and `events.log`. The
//! cluster's `JobBatchName` is the group name, so a worker killed between
//! `condor_submit` and the ids being written finds it again.
//!
//! A job held by the system (any hold but a person's `condor_hold`: over
//! its memory, its wall time, a transfer failure) will not run again
//! unattended: it is reported failed (out of memory for code 34) and
//! removed, and the worker's retry policy decides what follows. A job
//! whose submit description set a `periodic_release` is given a grace
//! first ([`HtcondorConfig::system_hold_grace`]): the schedd may release it
//! by itself.

pub mod parse;

use super::command::{program, run, run_ok};
use super::groups::{Carry, GroupFiles, NewGroup};
use super::{
    BatchError, BatchJobId, BatchSystem, JobGroup, JobKey, JobLaunch, LogBundle, Observed,
    ObservedState, Submitted,
};
use crate::batch::QueueDepth;
use crate::model::check::QueueOf;
use crate::model::spec::Launch;
use async_trait::async_trait;
use parse::{job_states, parse_ads, parse_event_log, parse_submit, JobAd, JobStatus};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The batch system's name.
const SYSTEM: &str = "htcondor";
/// Longest wait for one HTCondor command.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);
/// At most this many job ids on one command line.
const IDS_PER_COMMAND: usize = 500;
/// The attributes prodops reads from job ads.
const ATTRIBUTES: &str = "ClusterId,ProcId,JobStatus,ExitCode,ExitBySignal,ExitSignal,HoldReason,HoldReasonCode,HoldReasonSubCode,LastRemoteHost,RemoteHost,MachineAttrGLIDEIN_Site0,RemoteWallClockTime,RemoteUserCpu,ResidentSetSize,NumJobStarts,GlobalJobId,PeriodicRelease,EnteredCurrentStatus";
/// How a launch script's job id is found by default: `condor_submit -terse` prints `C.P - C.P`.
const LAUNCH_PATTERN: &str = r"(?m)^\s*(\d+\.\d+)\b";
/// `HoldReasonCode` of a person's `condor_hold`.
const HOLD_BY_USER: i64 = 1;
/// `HoldReasonCode` of a job waiting for its input to be spooled.
const HOLD_SPOOLING_INPUT: i64 = 16;
/// `HoldReasonCode` of a job over its memory limit.
const HOLD_OVER_MEMORY: i64 = 34;
/// How long a job held by the system but with a `periodic_release` is left
/// for the schedd to release, by default.
const SYSTEM_HOLD_GRACE: Duration = Duration::from_secs(300);

/// How prodops uses an HTCondor pool.
#[derive(Debug, Clone, PartialEq)]
pub struct HtcondorConfig {
    /// Where the submit files, scripts, event logs and output files live (on the submit host).
    pub work_dir: PathBuf,
    /// The directory of the `condor_*` commands (default: found on `PATH`).
    pub bin_dir: Option<PathBuf>,
    /// How often states are asked for.
    pub poll_interval: Duration,
    /// The command that runs one job on an execute node; `--spec <job.json>` is added.
    pub job_run: Vec<String>,
    /// The site recorded for jobs whose slot names none (`GLIDEIN_Site`).
    pub site: String,
    /// Submit-description lines of the site's own (accounting group, requirements, …).
    pub extra_lines: Vec<String>,
    /// How long a job held by HTCondor itself is left held when its
    /// `periodic_release` may release it, before it is reported failed and
    /// removed (a job without one is removed at once).
    pub system_hold_grace: Duration,
}

impl HtcondorConfig {
    /// Defaults for a pool submitted to from `work_dir`: this binary's
    /// `job-run` (the nodes must have it at the same path), states every 10 s.
    pub fn new(work_dir: PathBuf) -> HtcondorConfig {
        HtcondorConfig {
            work_dir,
            bin_dir: None,
            poll_interval: Duration::from_secs(10),
            job_run: super::groups::this_job_run(),
            site: SYSTEM.into(),
            extra_lines: Vec::new(),
            system_hold_grace: SYSTEM_HOLD_GRACE,
        }
    }
}

/// An HTCondor pool driven through its commands.
pub struct HtcondorBatch {
    config: HtcondorConfig,
    files: GroupFiles,
    /// Event-log problems already reported (each is reported once).
    reported: Mutex<BTreeSet<String>>,
}

impl HtcondorBatch {
    /// A backend on `config.work_dir` (created if needed).
    pub fn open(config: HtcondorConfig) -> Result<HtcondorBatch, BatchError> {
        let files = GroupFiles::open(
            SYSTEM,
            &config.work_dir,
            config.job_run.clone(),
            Carry::InScript,
        )?;
        Ok(HtcondorBatch {
            config,
            files,
            reported: Mutex::new(BTreeSet::new()),
        })
    }

    /// The submit description of `jobs` as group `group` in `dir`.
    pub fn submit_description(
        &self,
        group: &str,
        dir: &Path,
        jobs: &[&JobLaunch],
    ) -> Result<String, BatchError> {
        let first = jobs[0];
        let r = &first.resources;
        let sites = &first.sites;
        for site in sites.include.iter().chain(&sites.exclude) {
            check_word("site", site)?;
        }
        for model in &sites.usage_model {
            check_word("usage model", model)?;
        }
        let wall = ((r.wall_hours * 3600.0).ceil() as i64).max(60);
        let dir = dir.display();
        let mut lines = vec![
            format!(
                "# prodops group {group}: proc i runs job i of {dir}/tasks",
                dir = dir
            ),
            "universe = vanilla".to_string(),
            format!("batch_name = {group}"),
            format!("executable = {dir}/run.sh"),
            "arguments = $(Process)".into(),
            format!("initialdir = {dir}"),
            "output = $(Cluster).$(Process).out".into(),
            "error = $(Cluster).$(Process).err".into(),
            format!("log = {dir}/events.log"),
            "should_transfer_files = YES".into(),
            "when_to_transfer_output = ON_EXIT".into(),
            format!("request_memory = {}", r.memory_mb.max(1)),
            format!("request_cpus = {}", r.cpus.max(1)),
        ];
        if r.disk_mb > 0 {
            lines.push(format!("request_disk = {}", r.disk_mb * 1024));
        }
        lines.extend([
            format!("+JOB_EXPECTED_MAX_LIFETIME = {wall}"),
            format!("periodic_hold = (JobStatus == 2) && (time() - EnteredCurrentStatus > {wall})"),
            format!("periodic_hold_reason = \"over its wall-time limit of {wall} s\""),
        ]);
        if !sites.usage_model.is_empty() {
            lines.push(format!(
                "+DESIRED_usage_model = \"{}\"",
                sites.usage_model.join(",")
            ));
        }
        lines.push("job_machine_attrs = GLIDEIN_Site".into());
        let mut requirements = Vec::new();
        if !sites.include.is_empty() {
            lines.push(format!("+DESIRED_Sites = \"{}\"", sites.include.join(",")));
            requirements.push(
                "(isUndefined(TARGET.GLIDEIN_Site) == FALSE) && stringListIMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)",
            );
        }
        if !sites.exclude.is_empty() {
            lines.push(format!(
                "+Blacklist_Sites = \"{}\"",
                sites.exclude.join(",")
            ));
            requirements.push(
                "(isUndefined(TARGET.GLIDEIN_Site) || !stringListIMember(TARGET.GLIDEIN_Site, MY.Blacklist_Sites))",
            );
        }
        if !requirements.is_empty() {
            lines.push(format!("requirements = {}", requirements.join(" && ")));
        }
        lines.extend(self.config.extra_lines.iter().cloned());
        lines.push(format!("queue {}", jobs.len()));
        Ok(lines.join("\n") + "\n")
    }

    fn program(&self, name: &str) -> String {
        program(self.config.bin_dir.as_deref(), name)
    }

    /// The logs and records of job `id` of one of our groups; `None` for a
    /// job we did not submit ourselves (a launch script's).
    fn group_logs(&self, id: &BatchJobId) -> Result<Option<LogBundle>, BatchError> {
        let Some((cluster, proc)) = parse_id(&id.0) else {
            return Ok(None);
        };
        let Some(group) = self.files.by_id(&cluster.to_string()) else {
            return Ok(None);
        };
        let Some(name) = group.names.get(proc as usize) else {
            return Ok(None);
        };
        let out = group.dir.join(format!("{cluster}.{proc}.out"));
        let err = group.dir.join(format!("{cluster}.{proc}.err"));
        self.files.bundle(name, &out, &err).map(Some)
    }

    /// Records cluster `cluster` of group `group`: proc i is job i.
    fn record(&self, group: &str, cluster: u64) -> Result<Vec<Submitted>, BatchError> {
        let names = self.files.names(group)?;
        let ids: Vec<BatchJobId> = (0..names.len())
            .map(|i| BatchJobId(format!("{cluster}.{i}")))
            .collect();
        self.files.record(group, &cluster.to_string(), &ids)
    }

    /// Ads from `condor_q` or `condor_history` (`command`) with `args`.
    async fn ads(&self, command: &str, args: &[String]) -> Result<Vec<JobAd>, BatchError> {
        let mut all = vec!["-json".to_string(), "-attributes".into(), ATTRIBUTES.into()];
        all.extend_from_slice(args);
        let out = run_ok(SYSTEM, &self.program(command), &all, COMMAND_LIMIT).await?;
        parse_ads(&out).map_err(|e| failed(&e.to_string()))
    }

    /// What the schedd says of the jobs of `clusters`: the queue, then the
    /// history for clusters with jobs the queue no longer has, then the
    /// event logs for jobs neither has.
    async fn ads_of(
        &self,
        clusters: &BTreeSet<u64>,
        wanted: &[(u64, u64)],
    ) -> Result<HashMap<(u64, u64), JobAd>, BatchError> {
        let mut found: HashMap<(u64, u64), JobAd> = HashMap::new();
        for chunk in chunks(clusters) {
            for ad in self.ads("condor_q", &chunk).await? {
                found.insert((ad.cluster, ad.proc), ad);
            }
        }
        let left: BTreeSet<u64> = missing(wanted, &found);
        for chunk in chunks(&left) {
            for ad in self.ads("condor_history", &chunk).await? {
                found.entry((ad.cluster, ad.proc)).or_insert(ad);
            }
        }
        for cluster in missing(wanted, &found) {
            for (id, ad) in self.logged(cluster) {
                found.entry(id).or_insert(ad);
            }
        }
        Ok(found)
    }

    /// The jobs of `cluster` as its group's event log tells them.
    fn logged(&self, cluster: u64) -> Vec<((u64, u64), JobAd)> {
        let Some(group) = self.files.by_id(&cluster.to_string()) else {
            return Vec::new();
        };
        let file = group.dir.join("events.log");
        let Ok(text) = std::fs::read_to_string(&file) else {
            return Vec::new();
        };
        let log = parse_event_log(&text);
        for problem in &log.skipped {
            self.report_once(format!("{}: {problem}; skipped", file.display()));
        }
        job_states(&log.events)
            .into_iter()
            .filter(|(id, _)| id.0 == cluster)
            .collect()
    }

    /// Says `warning` on standard error, the first time only (the same
    /// event log is read at every poll).
    fn report_once(&self, warning: String) {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if !reported.contains(&warning) {
            eprintln!("worker: warning: {SYSTEM}: {warning}");
            reported.insert(warning);
        }
    }

    /// The cluster submitted as group `group`, if HTCondor knows it (adoption after a crash).
    async fn cluster_named(&self, group: &str) -> Result<Option<u64>, BatchError> {
        let constraint = vec![
            "-constraint".to_string(),
            format!("JobBatchName == \"{group}\""),
        ];
        if let Some(ad) = self.ads("condor_q", &constraint).await?.first() {
            return Ok(Some(ad.cluster));
        }
        let mut history = constraint;
        history.extend(["-limit".to_string(), "1".to_string()]);
        Ok(self
            .ads("condor_history", &history)
            .await?
            .first()
            .map(|ad| ad.cluster))
    }

    /// Runs `command` on `ids`, many at a time; jobs in the wrong state for
    /// it (already gone, not held) are not an error.
    async fn control(&self, command: &str, ids: &[String]) -> Result<(), BatchError> {
        for chunk in ids.chunks(IDS_PER_COMMAND) {
            run(SYSTEM, &self.program(command), chunk, COMMAND_LIMIT).await?;
        }
        Ok(())
    }

    /// Our ids among `ids`, split by whether their `JobStatus` is `status`
    /// now or not.
    async fn split_running(
        &self,
        ids: &[BatchJobId],
        status: JobStatus,
    ) -> Result<(Vec<String>, Vec<String>), BatchError> {
        let wanted: Vec<(u64, u64)> = ids.iter().filter_map(|id| parse_id(&id.0)).collect();
        let clusters: BTreeSet<u64> = wanted.iter().map(|w| w.0).collect();
        let mut now = HashMap::new();
        for chunk in chunks(&clusters) {
            for ad in self.ads("condor_q", &chunk).await? {
                now.insert((ad.cluster, ad.proc), ad.status);
            }
        }
        let (on, off): (Vec<_>, Vec<_>) =
            wanted.iter().partition(|id| now.get(id) == Some(&status));
        let text = |v: Vec<&(u64, u64)>| v.iter().map(|(c, p)| format!("{c}.{p}")).collect();
        Ok((text(on), text(off)))
    }
}

#[async_trait]
impl BatchSystem for HtcondorBatch {
    fn name(&self) -> &str {
        SYSTEM
    }

    fn default_site(&self) -> &str {
        &self.config.site
    }

    /// `htcondor@HOST`: the commands ask this host's schedd, which alone
    /// holds the jobs submitted here.
    fn instance(&self) -> String {
        format!("{SYSTEM}@{}", crate::host::hostname())
    }

    async fn submit(&self, group: &JobGroup) -> Result<Vec<Submitted>, BatchError> {
        let (mut done, new) = self.files.split_recorded(&group.jobs);
        let Some(NewGroup { name, jobs: new }) = new else {
            return Ok(done);
        };
        let description = self.submit_description(&name, &self.files.group_dir(&name), &new)?;
        let dir = self.files.prepare(&name, &new, "$1")?;
        let file = dir.join("submit.sub");
        std::fs::write(&file, description).map_err(|e| super::logs::io_error(SYSTEM, &file, e))?;
        let out = run_ok(
            SYSTEM,
            &self.program("condor_submit"),
            &[file.display().to_string()],
            COMMAND_LIMIT,
        )
        .await?;
        let (cluster, count) = parse_submit(&out).map_err(|e| failed(&e.to_string()))?;
        crate::failpoint::hit("htcondor:after-submit");
        if count != new.len() as u64 {
            return Err(failed(&format!(
                "condor_submit made {count} jobs in cluster {cluster}, not {}",
                new.len()
            )));
        }
        done.extend(self.record(&name, cluster)?);
        Ok(done)
    }

    fn launches(&self) -> bool {
        true
    }

    async fn launch(
        &self,
        launch: &Launch,
        jobs: &[JobLaunch],
    ) -> Result<Vec<Submitted>, BatchError> {
        self.files.launch(launch, LAUNCH_PATTERN, jobs).await
    }

    async fn find(&self, keys: &[JobKey]) -> Result<Vec<Submitted>, BatchError> {
        self.files
            .find(keys, |group| async move {
                if let Some(cluster) = self.cluster_named(&group).await? {
                    self.record(&group, cluster)?;
                }
                Ok(())
            })
            .await
    }

    async fn poll(&self, ids: &[BatchJobId]) -> Result<Vec<Observed>, BatchError> {
        let wanted: Vec<(u64, u64)> = ids.iter().filter_map(|id| parse_id(&id.0)).collect();
        let clusters: BTreeSet<u64> = wanted.iter().map(|w| w.0).collect();
        let ads = if wanted.is_empty() {
            HashMap::new()
        } else {
            self.ads_of(&clusters, &wanted).await?
        };
        let now = unix_now();
        let grace = self.config.system_hold_grace;
        let observed: Vec<Observed> = ids
            .iter()
            .map(|id| match parse_id(&id.0).and_then(|key| ads.get(&key)) {
                Some(ad) => observe(id, ad, &self.config.site, system_hold(ad, now, grace)),
                None => Observed::state(id.clone(), ObservedState::Unknown),
            })
            .collect();
        let stuck: Vec<String> = ids
            .iter()
            .filter_map(|id| parse_id(&id.0).and_then(|key| ads.get(&key)))
            .filter(|ad| system_hold(ad, now, grace) == SystemHold::ForGood)
            .map(|ad| format!("{}.{}", ad.cluster, ad.proc))
            .collect();
        self.control("condor_rm", &stuck).await?;
        Ok(observed)
    }

    async fn cancel(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        self.control("condor_rm", &ours(ids)).await
    }

    async fn hold(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        self.control("condor_hold", &ours(ids)).await
    }

    async fn release(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        let (suspended, rest) = self.split_running(ids, JobStatus::Suspended).await?;
        self.control("condor_continue", &suspended).await?;
        self.control("condor_release", &rest).await
    }

    async fn fetch_logs(&self, id: &BatchJobId) -> Result<LogBundle, BatchError> {
        self.group_logs(id)?.ok_or_else(|| {
            failed(&format!(
                "{id} is not a job of prodops' own submissions (a launch script's job?): its logs are where its submit description sent them"
            ))
        })
    }

    async fn fetch_records(&self, ids: &[BatchJobId]) -> Result<Vec<LogBundle>, BatchError> {
        ids.iter()
            .map(|id| Ok(self.group_logs(id)?.unwrap_or_default()))
            .collect()
    }

    async fn queue_depth(&self, of: &QueueOf) -> Result<QueueDepth, BatchError> {
        let group = accounting_group(of);
        let args = match &group {
            Some(group) => vec!["-constraint".to_string(), accounting_constraint(group)],
            None => Vec::new(),
        };
        let jobs = self
            .ads("condor_q", &args)
            .await?
            .iter()
            .filter(|ad| matches!(ad.status, JobStatus::Idle | JobStatus::Running))
            .count() as u64;
        Ok(QueueDepth {
            jobs,
            whose: QueueOf::default().describe(group.as_deref()),
        })
    }

    async fn changed(&self) {
        tokio::time::sleep(self.config.poll_interval).await;
    }
}

/// `(cluster, proc)` of a batch id `<cluster>.<proc>`.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (cluster, proc) = id.split_once('.')?;
    Some((cluster.parse().ok()?, proc.parse().ok()?))
}

/// The clusters of `wanted` with a job not in `found`.
fn missing(wanted: &[(u64, u64)], found: &HashMap<(u64, u64), JobAd>) -> BTreeSet<u64> {
    wanted
        .iter()
        .filter(|id| !found.contains_key(id))
        .map(|id| id.0)
        .collect()
}

/// Cluster ids as command-line arguments, a bounded number at a time.
fn chunks(clusters: &BTreeSet<u64>) -> Vec<Vec<String>> {
    let all: Vec<String> = clusters.iter().map(u64::to_string).collect();
    all.chunks(IDS_PER_COMMAND)
        .map(<[String]>::to_vec)
        .collect()
}

/// True for a job held by HTCondor itself (it will not run again unless
/// released).
fn held_by_system(ad: &JobAd) -> bool {
    ad.status == JobStatus::Held
        && !matches!(ad.hold_code, Some(HOLD_BY_USER | HOLD_SPOOLING_INPUT))
}

/// What a hold by HTCondor itself means for a job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SystemHold {
    /// The job is not held by HTCondor.
    No,
    /// Its `periodic_release` may still release it, for this many seconds.
    Grace(u64),
    /// It will not run again: reported failed and removed.
    ForGood,
}

/// Whether `ad` is held by HTCondor and, at `now` (Unix seconds), still
/// within `grace` of its hold for its `periodic_release` to act. A hold of
/// unknown start (no `EnteredCurrentStatus`) gets no grace.
fn system_hold(ad: &JobAd, now: i64, grace: Duration) -> SystemHold {
    if !held_by_system(ad) {
        return SystemHold::No;
    }
    let held_for = ad
        .status_since
        .map(|since| now.saturating_sub(since).max(0) as u64);
    match held_for {
        Some(held) if ad.release_policy && held < grace.as_secs() => {
            SystemHold::Grace(grace.as_secs() - held)
        }
        _ => SystemHold::ForGood,
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A hold's reason with its code and (non-zero) subcode.
fn hold_text(ad: &JobAd) -> String {
    let reason = ad.hold_reason.clone().unwrap_or_else(|| "held".into());
    match (ad.hold_code, ad.hold_subcode.filter(|sub| *sub != 0)) {
        (Some(code), Some(sub)) => format!("{reason} (hold code {code}, subcode {sub})"),
        (Some(code), None) => format!("{reason} (hold code {code})"),
        (None, _) => reason,
    }
}

/// What a job ad means for the worker, `hold` being what a hold by
/// HTCondor itself means now.
fn observe(id: &BatchJobId, ad: &JobAd, site: &str, hold: SystemHold) -> Observed {
    let (state, reason) = match ad.status {
        JobStatus::Idle => (ObservedState::Queued, ad.requeued.clone()),
        JobStatus::Running | JobStatus::TransferringOutput => (ObservedState::Running, None),
        JobStatus::Suspended => (ObservedState::Held, Some("suspended".to_string())),
        JobStatus::Removed if ad.exit_signal.is_some() => (ObservedState::Failed, None),
        JobStatus::Removed => (ObservedState::Removed, Some("removed".to_string())),
        JobStatus::Completed if ad.exit_code == Some(0) => (ObservedState::Succeeded, None),
        JobStatus::Completed => (ObservedState::Failed, None),
        JobStatus::Held if ad.hold_code == Some(HOLD_SPOOLING_INPUT) => {
            (ObservedState::Queued, None)
        }
        JobStatus::Held => match hold {
            SystemHold::No => (ObservedState::Held, Some(hold_text(ad))),
            SystemHold::Grace(left) => (
                ObservedState::Queued,
                Some(format!(
                    "held by HTCondor: {}; its periodic_release may release it (removed in {left} s if not)",
                    hold_text(ad)
                )),
            ),
            SystemHold::ForGood => (
                ObservedState::Failed,
                Some(format!("held by HTCondor: {}", hold_text(ad))),
            ),
        },
    };
    Observed {
        exit_code: ad.exit_code.filter(|_| state.is_final()),
        signal: ad.exit_signal.filter(|_| state.is_final()),
        oom: state == ObservedState::Failed
            && ad.status == JobStatus::Held
            && ad.hold_code == Some(HOLD_OVER_MEMORY),
        node: ad.node.clone(),
        site: Some(ad.site.clone().unwrap_or_else(|| site.to_string())),
        reason,
        ..Observed::state(id.clone(), state)
    }
}

/// Refuses a value that would break out of a quoted submit-description string.
fn check_word(what: &str, value: &str) -> Result<(), BatchError> {
    let fine = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if fine {
        Ok(())
    } else {
        Err(failed(&format!(
            "{what} `{value}` may only hold letters, digits, `_`, `-` and `.`"
        )))
    }
}

/// The ids among `ids` that are HTCondor's (`cluster.proc`), as text.
fn ours(ids: &[BatchJobId]) -> Vec<String> {
    ids.iter()
        .filter(|id| parse_id(&id.0).is_some())
        .map(|id| id.0.clone())
        .collect()
}

/// The accounting group whose jobs a queue check counts: the given one, or
/// `group_<experiment>`, with the role as its subgroup (`group_nova.prod`);
/// none when the check covers every experiment.
fn accounting_group(of: &QueueOf) -> Option<String> {
    let group = of.group_or(|experiment| format!("group_{experiment}"))?;
    Some(match &of.role {
        Some(role) => format!("{group}.{role}"),
        None => group,
    })
}

/// The constraint selecting the jobs of accounting group `group` and its
/// subgroups (`AccountingGroup` is `group.subgroup.user`).
fn accounting_constraint(group: &str) -> String {
    let escaped: String = group
        .chars()
        .map(|c| match c {
            '.' => "[.]".to_string(),
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => c.to_string(),
            _ => String::new(),
        })
        .collect();
    format!("regexp(\"^{escaped}([.]|$)\", AccountingGroup)")
}

fn failed(message: &str) -> BatchError {
    BatchError::Failed {
        system: SYSTEM.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::{Resources, Sites};

    fn launch(job: i64, sites: Sites) -> JobLaunch {
        let resources = Resources {
            memory_mb: 2000,
            wall_hours: 2.0,
            cpus: 1,
            disk_mb: 10,
        };
        crate::batch::test_launch(job, resources, sites)
    }

    fn batch(dir: &Path) -> HtcondorBatch {
        let mut config = HtcondorConfig::new(dir.to_path_buf());
        config.extra_lines = vec!["+AccountingGroup = \"group_mu2e.prod\"".into()];
        HtcondorBatch::open(config).unwrap()
    }

    #[test]
    fn p3_a_queue_check_selects_the_accounting_group_of_its_experiment_and_role() {
        let of = |experiment: Option<&str>, group: Option<&str>, role: Option<&str>| QueueOf {
            experiment: experiment.map(str::to_string),
            group: group.map(str::to_string),
            role: role.map(str::to_string),
        };
        assert_eq!(
            accounting_group(&of(Some("nova"), None, Some("prod"))).as_deref(),
            Some("group_nova.prod")
        );
        assert_eq!(
            accounting_group(&of(Some("nova"), Some("group_fife"), None)).as_deref(),
            Some("group_fife")
        );
        assert_eq!(accounting_group(&of(None, None, None)), None);
        assert_eq!(
            accounting_constraint("group_nova.prod"),
            "regexp(\"^group_nova[.]prod([.]|$)\", AccountingGroup)"
        );
        assert_eq!(
            accounting_constraint("group_nova\")|| true"),
            "regexp(\"^group_novatrue([.]|$)\", AccountingGroup)",
            "nothing but a name reaches the constraint"
        );
    }

    #[test]
    fn s3_jobs_submitted_here_belong_to_this_hosts_schedd() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            batch(dir.path()).instance(),
            format!("htcondor@{}", crate::host::hostname())
        );
    }

    #[test]
    fn x10_the_submit_description_queues_one_proc_per_job_with_sites_and_resources() {
        let dir = tempfile::tempdir().unwrap();
        let sites = Sites {
            usage_model: vec!["DEDICATED".into(), "OPPORTUNISTIC".into()],
            include: vec!["FNAL".into(), "Wisconsin".into()],
            exclude: vec!["BadSite".into()],
        };
        let (a, b) = (launch(1, sites.clone()), launch(2, sites));
        let text = batch(dir.path())
            .submit_description("g", Path::new("/w/groups/g"), &[&a, &b])
            .unwrap();
        assert_eq!(
            text,
            "# prodops group g: proc i runs job i of /w/groups/g/tasks
universe = vanilla
batch_name = g
executable = /w/groups/g/run.sh
arguments = $(Process)
initialdir = /w/groups/g
output = $(Cluster).$(Process).out
error = $(Cluster).$(Process).err
log = /w/groups/g/events.log
should_transfer_files = YES
when_to_transfer_output = ON_EXIT
request_memory = 2000
request_cpus = 1
request_disk = 10240
+JOB_EXPECTED_MAX_LIFETIME = 7200
periodic_hold = (JobStatus == 2) && (time() - EnteredCurrentStatus > 7200)
periodic_hold_reason = \"over its wall-time limit of 7200 s\"
+DESIRED_usage_model = \"DEDICATED,OPPORTUNISTIC\"
job_machine_attrs = GLIDEIN_Site
+DESIRED_Sites = \"FNAL,Wisconsin\"
+Blacklist_Sites = \"BadSite\"
requirements = (isUndefined(TARGET.GLIDEIN_Site) == FALSE) && stringListIMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites) && (isUndefined(TARGET.GLIDEIN_Site) || !stringListIMember(TARGET.GLIDEIN_Site, MY.Blacklist_Sites))
+AccountingGroup = \"group_mu2e.prod\"
queue 2
"
        );
    }

    #[test]
    fn a_site_name_that_would_break_the_submit_description_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let evil = launch(
            1,
            Sites {
                include: vec!["X\"\nqueue 1000".into()],
                ..Sites::default()
            },
        );
        let err = batch(dir.path())
            .submit_description("g", Path::new("/g"), &[&evil])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("site `X\"\nqueue 1000` may only hold"),
            "{err}"
        );
    }

    #[test]
    fn x10_job_ads_map_to_what_the_worker_follows_and_system_holds_fail() {
        let id = BatchJobId("7.1".into());
        let ad = |status, exit: Option<i64>, hold: Option<i64>| JobAd {
            exit_code: exit,
            hold_code: hold,
            hold_reason: hold.map(|_| "Job has gone over memory limit of 2048 megabytes.".into()),
            ..JobAd::new(7, 1, status)
        };
        let seen = |a: JobAd| {
            let hold = system_hold(&a, 0, SYSTEM_HOLD_GRACE);
            observe(&id, &a, "htcondor", hold)
        };
        assert_eq!(
            seen(ad(JobStatus::Idle, None, None)).state,
            ObservedState::Queued
        );
        assert_eq!(
            seen(ad(JobStatus::TransferringOutput, None, None)).state,
            ObservedState::Running
        );
        assert_eq!(
            seen(ad(JobStatus::Completed, Some(0), None)).state,
            ObservedState::Succeeded
        );
        let failed = seen(ad(JobStatus::Completed, Some(3), None));
        assert_eq!(
            (failed.state, failed.exit_code),
            (ObservedState::Failed, Some(3))
        );
        let user_hold = seen(ad(JobStatus::Held, None, Some(HOLD_BY_USER)));
        assert_eq!(user_hold.state, ObservedState::Held);
        let oom = seen(ad(JobStatus::Held, None, Some(HOLD_OVER_MEMORY)));
        assert!(oom.oom && oom.state == ObservedState::Failed);
        assert_eq!(
            oom.reason.as_deref(),
            Some("held by HTCondor: Job has gone over memory limit of 2048 megabytes. (hold code 34)")
        );
        assert!(held_by_system(&ad(
            JobStatus::Held,
            None,
            Some(HOLD_OVER_MEMORY)
        )));
        assert!(!held_by_system(&ad(
            JobStatus::Held,
            None,
            Some(HOLD_BY_USER)
        )));
        assert_eq!(
            seen(ad(JobStatus::Removed, None, None)).state,
            ObservedState::Removed
        );
        assert_eq!(
            seen(ad(JobStatus::Idle, None, None)).site.as_deref(),
            Some("htcondor")
        );
    }

    /// A job held by HTCondor at Unix second 1000, code `code`, with a
    /// `periodic_release` or not.
    fn system_held(code: i64, subcode: i64, release_policy: bool) -> JobAd {
        JobAd {
            hold_reason: Some(
                "Error from slot1@wn: Job has gone over cgroup memory limit of 2048 megabytes."
                    .into(),
            ),
            hold_code: Some(code),
            hold_subcode: Some(subcode),
            release_policy,
            status_since: Some(1000),
            ..JobAd::new(7, 1, JobStatus::Held)
        }
    }

    #[test]
    fn d1_a_hold_reason_keeps_its_code_and_its_subcode() {
        let ad = JobAd {
            hold_reason: Some("Error from slot1@wn: Failed to execute '/x/run.sh': (errno=8: 'Exec format error')".into()),
            ..system_held(6, 8, false)
        };
        let seen = observe(
            &BatchJobId("7.1".into()),
            &ad,
            "htcondor",
            SystemHold::ForGood,
        );
        assert_eq!(
            seen.reason.as_deref(),
            Some("held by HTCondor: Error from slot1@wn: Failed to execute '/x/run.sh': (errno=8: 'Exec format error') (hold code 6, subcode 8)")
        );
        let oom = observe(
            &BatchJobId("7.1".into()),
            &system_held(34, 0, false),
            "htcondor",
            SystemHold::ForGood,
        );
        assert!(
            oom.reason
                .as_deref()
                .unwrap()
                .ends_with("megabytes. (hold code 34)"),
            "subcode 0 says nothing: {:?}",
            oom.reason
        );
    }

    #[test]
    fn x10_a_system_hold_with_a_periodic_release_waits_its_grace_before_it_fails() {
        let grace = Duration::from_secs(300);
        let ad = system_held(HOLD_OVER_MEMORY, 0, true);
        assert_eq!(system_hold(&ad, 1000, grace), SystemHold::Grace(300));
        assert_eq!(system_hold(&ad, 1299, grace), SystemHold::Grace(1));
        assert_eq!(system_hold(&ad, 1300, grace), SystemHold::ForGood);
        assert_eq!(
            system_hold(&ad, 1000, Duration::ZERO),
            SystemHold::ForGood,
            "a grace of 0 removes at once"
        );
        let waiting = observe(
            &BatchJobId("7.1".into()),
            &ad,
            "htcondor",
            SystemHold::Grace(120),
        );
        assert_eq!((waiting.state, waiting.oom), (ObservedState::Queued, false));
        assert_eq!(
            waiting.reason.as_deref(),
            Some("held by HTCondor: Error from slot1@wn: Job has gone over cgroup memory limit of 2048 megabytes. (hold code 34); its periodic_release may release it (removed in 120 s if not)")
        );
        let failed = observe(
            &BatchJobId("7.1".into()),
            &ad,
            "htcondor",
            SystemHold::ForGood,
        );
        assert_eq!((failed.state, failed.oom), (ObservedState::Failed, true));
    }

    #[test]
    fn x10_a_system_hold_without_a_release_policy_or_a_known_start_fails_at_once() {
        let grace = Duration::from_secs(300);
        assert_eq!(
            system_hold(&system_held(HOLD_OVER_MEMORY, 0, false), 1000, grace),
            SystemHold::ForGood
        );
        let unknown_start = JobAd {
            status_since: None,
            ..system_held(HOLD_OVER_MEMORY, 0, true)
        };
        assert_eq!(
            system_hold(&unknown_start, 1000, grace),
            SystemHold::ForGood
        );
        let by_a_person = JobAd {
            hold_code: Some(HOLD_BY_USER),
            ..system_held(HOLD_BY_USER, 0, true)
        };
        assert_eq!(system_hold(&by_a_person, 1000, grace), SystemHold::No);
        assert_eq!(
            system_hold(&JobAd::new(7, 1, JobStatus::Running), 1000, grace),
            SystemHold::No
        );
    }

    #[test]
    fn d1_a_job_that_exits_non_zero_after_a_memory_hold_was_released_is_not_out_of_memory() {
        let ad = JobAd {
            exit_code: Some(65),
            hold_code: Some(HOLD_OVER_MEMORY),
            ..JobAd::new(7, 1, JobStatus::Completed)
        };
        let seen = observe(&BatchJobId("7.1".into()), &ad, "htcondor", SystemHold::No);
        assert_eq!(
            (seen.state, seen.exit_code, seen.oom),
            (ObservedState::Failed, Some(65), false)
        );
    }

    #[test]
    fn d1_a_job_killed_by_a_signal_then_removed_failed_by_that_signal() {
        let ad = JobAd {
            exit_signal: Some(11),
            ..JobAd::new(7, 1, JobStatus::Removed)
        };
        let seen = observe(&BatchJobId("7.1".into()), &ad, "htcondor", SystemHold::No);
        assert_eq!(
            (seen.state, seen.signal, seen.reason),
            (ObservedState::Failed, Some(11), None)
        );
        let removed = observe(
            &BatchJobId("7.1".into()),
            &JobAd::new(7, 1, JobStatus::Removed),
            "htcondor",
            SystemHold::No,
        );
        assert_eq!(removed.state, ObservedState::Removed);
    }

    #[test]
    fn x10_a_job_requeued_after_a_failed_reconnect_is_queued_with_the_reason() {
        let ad = JobAd {
            requeued: Some("disconnected, reconnect failed: requeued".into()),
            ..JobAd::new(7, 1, JobStatus::Idle)
        };
        let seen = observe(&BatchJobId("7.1".into()), &ad, "htcondor", SystemHold::No);
        assert_eq!(
            (seen.state, seen.reason.as_deref()),
            (
                ObservedState::Queued,
                Some("disconnected, reconnect failed: requeued")
            )
        );
    }

    #[test]
    fn batch_ids_are_cluster_dot_proc() {
        assert_eq!(parse_id("12.3"), Some((12, 3)));
        for bad in ["12", "a.1", "1.b", "", ".", "1_2"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
