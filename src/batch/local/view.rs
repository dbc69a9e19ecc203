//! What the two logs say about every job, replayed record by record: the
//! executor rebuilds its queue from it after a restart, and workers answer
//! `poll`, `find` and `fetch_logs` from it.

use super::protocol::{Command, Event, SubmittedSpec};
use super::valid_name;
use crate::model::jobspec::{JobResult, JobRunSpec, StageEvent};
use std::collections::HashMap;

/// One job as the logs describe it.
#[derive(Debug, Clone, Default)]
pub struct JobStatus {
    /// What to run (kept only by the executor, until the job ended).
    pub spec: Option<JobRunSpec>,
    /// Held by a worker.
    pub held: bool,
    /// Cancelled by a worker.
    pub cancelled: bool,
    /// Host, once started.
    pub node: Option<String>,
    /// Its script's process and start time, once it started.
    pub pid: Option<(i32, u64)>,
    /// Its stage records as JSON lines (the `stages.jsonl` of other backends).
    pub stages: String,
    /// How it ended, once it did.
    pub end: Option<End>,
}

impl JobStatus {
    /// True once the executor took it.
    pub fn started(&self) -> bool {
        self.node.is_some()
    }

    /// True while it waits for a slot or runs.
    pub fn unfinished(&self) -> bool {
        self.end.is_none()
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// By itself, with this result.
    Result(Box<JobResult>),
    /// Cancelled.
    Removed,
    /// Unknown: the executor stopped while it ran.
    Lost(String),
}

/// Every job of one executor root.
#[derive(Debug, Default)]
pub struct View {
    jobs: HashMap<String, JobStatus>,
    /// Names in submission order.
    order: Vec<String>,
    /// The executor's view: specs kept (to run them), stage records not.
    executor: bool,
    /// Started, ended, removed or lost events seen so far.
    changes: u64,
}

impl View {
    /// The executor's view: what each job runs, until it ended.
    pub fn for_executor() -> Self {
        Self {
            executor: true,
            ..Self::default()
        }
    }

    /// A worker's view: each job's stage records, for its logs.
    pub fn for_worker() -> Self {
        Self::default()
    }

    /// The job called `name`.
    pub fn get(&self, name: &str) -> Option<&JobStatus> {
        self.jobs.get(name)
    }

    /// Every job in submission order.
    pub fn in_order(&self) -> impl Iterator<Item = (&str, &JobStatus)> {
        self.order
            .iter()
            .filter_map(|name| Some((name.as_str(), self.jobs.get(name)?)))
    }

    /// How many jobs wait or run.
    pub fn unfinished(&self) -> usize {
        self.jobs.values().filter(|j| j.unfinished()).count()
    }

    /// Started, ended, removed and lost events seen so far: a job changed
    /// state when this grew.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Applies a worker's command (the executor's view keeps the spec).
    pub fn apply_command<S: SubmittedSpec>(&mut self, command: Command<S>) {
        match command {
            Command::Submit { name, spec } => self.submitted(name, spec.into_spec()),
            Command::Hold { name } => self.update(&name, |j| j.held = true),
            Command::Release { name } => self.update(&name, |j| j.held = false),
            Command::Cancel { name } => self.update(&name, |j| j.cancelled = true),
            Command::Slots { .. } => {}
        }
    }

    /// Notes a submission (a name already known, or not one of ours, is left alone).
    fn submitted(&mut self, name: String, spec: Option<JobRunSpec>) {
        if self.jobs.contains_key(&name) || !valid_name(&name) {
            return;
        }
        let spec = spec.filter(|_| self.executor);
        self.order.push(name.clone());
        self.jobs.insert(
            name,
            JobStatus {
                spec,
                ..JobStatus::default()
            },
        );
    }

    /// Applies one of the executor's events. A job seen first in an event
    /// (its submission was read after it) is known from then on.
    pub fn apply_event(&mut self, event: Event) {
        let counts = !matches!(event, Event::Stage { .. } | Event::Pid { .. });
        let executor = self.executor;
        if !valid_name(event.name()) {
            return;
        }
        if !self.jobs.contains_key(event.name()) {
            self.order.push(event.name().to_string());
        }
        let job = self.jobs.entry(event.name().to_string()).or_default();
        match event {
            Event::Started { node, .. } => job.node = Some(node),
            Event::Pid { pid, start, .. } => job.pid = Some((pid, start)),
            Event::Stage { .. } if executor => {}
            Event::Stage { stage, .. } => push_stage(&mut job.stages, &stage),
            Event::Ended { result, .. } => job.end = Some(End::Result(Box::new(result))),
            Event::Removed { .. } => job.end = Some(End::Removed),
            Event::Lost { why, .. } => job.end = Some(End::Lost(why)),
        }
        if job.end.is_some() {
            job.spec = None;
        }
        if counts {
            self.changes += 1;
        }
    }

    fn update(&mut self, name: &str, change: impl FnOnce(&mut JobStatus)) {
        if let Some(job) = self.jobs.get_mut(name) {
            change(job);
        }
    }
}

fn push_stage(stages: &mut String, stage: &StageEvent) {
    stages.push_str(&serde_json::to_string(stage).expect("a stage event serialises"));
    stages.push('\n');
}
