//! How far a campaign has come (M1): one definition, used by the command
//! line, the console and reports alike.
//!
//! Progress is **units done ÷ units planned**, with the units **failed for
//! good** beside them (never inside `done`). A Monte-Carlo campaign counts
//! events, a data campaign input files, and every stage counts the units it
//! processes:
//!
//! - a stage that generates plans its `events`; any other stage of a
//!   Monte-Carlo campaign processes the events of the stages it follows (their
//!   sum; a stage that follows none, the campaign's generated events), and its
//!   share of them done is its share of input files done. A 1000-event
//!   `gen → sim → reco` chain thus plans 3000 events.
//! - a stage of a data campaign plans the input files its jobs were given when
//!   it was split; before that, as many files as the stages it follows plan
//!   (one output per input), marked estimated; a first stage not yet split
//!   plans 0 until its input is resolved.
//!
//! Only current job attempts count: a retried attempt is replaced by its retry.
//! `done` is the units of succeeded jobs, `failed` those of jobs that failed or
//! were removed and are not retried (what an operator must resubmit).

use super::spec::TaskKind;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use std::fmt;

/// What progress counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Monte-Carlo events, once per stage that processes them.
    Events,
    /// Input files, once per stage that reads them.
    Files,
}

impl Unit {
    /// The unit's name in output and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Events => "events",
            Unit::Files => "files",
        }
    }
}

/// Units done of units planned, with the units failed for good beside them (M1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What is counted.
    pub unit: Unit,
    /// Units of succeeded jobs.
    pub done: i64,
    /// Units planned by every stage.
    pub planned: i64,
    /// Units of jobs that failed for good (not retried).
    pub failed: i64,
    /// True when some stage's plan is estimated (a data stage not split yet).
    pub estimated: bool,
}

impl Progress {
    /// Nothing planned yet, counted in `unit`.
    pub fn nothing(unit: Unit) -> Progress {
        Progress {
            unit,
            done: 0,
            planned: 0,
            failed: 0,
            estimated: false,
        }
    }

    /// Percent done, rounded down to a tenth: 100.0 only when every planned
    /// unit is done, 0.0 while nothing is planned.
    pub fn percent(&self) -> f64 {
        if self.planned <= 0 {
            return 0.0;
        }
        let done = i128::from(self.done.clamp(0, self.planned));
        let tenths = done * 1000 / i128::from(self.planned);
        tenths as f64 / 10.0
    }
}

impl Serialize for Progress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Progress", 6)?;
        s.serialize_field("unit", self.unit.as_str())?;
        s.serialize_field("done", &self.done)?;
        s.serialize_field("planned", &self.planned)?;
        s.serialize_field("failed", &self.failed)?;
        s.serialize_field("percent", &self.percent())?;
        s.serialize_field("estimated", &self.estimated)?;
        s.end()
    }
}

/// `55.0% (1650/3000 events, 100 failed for good)`; the failed part only when
/// some failed, and `, estimated` when a stage's plan is.
impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.1}% ({}/{} {}",
            self.percent(),
            self.done,
            self.planned,
            self.unit.as_str()
        )?;
        if self.failed > 0 {
            write!(f, ", {} failed for good", self.failed)?;
        }
        if self.estimated {
            f.write_str(", estimated")?;
        }
        f.write_str(")")
    }
}

/// What the current job attempts of one stage say, in the stage's own unit:
/// the events its jobs generate, or the input files they read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobUnits {
    /// Units of all current attempts.
    pub planned: i64,
    /// Units of the succeeded ones.
    pub done: i64,
    /// Units of those that failed or were removed.
    pub failed: i64,
}

/// One stage (subtask) of a campaign as progress sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageUnits {
    /// Positions, among the campaign's stages, of the stages it follows
    /// (stages are given parents first).
    pub parents: Vec<usize>,
    /// The events it generates, when it is a generating stage.
    pub generates: Option<i64>,
    /// Its jobs' units, once it has been split into jobs.
    pub jobs: Option<JobUnits>,
}

/// What one stage contributes, in the campaign's unit.
#[derive(Debug, Clone, Copy, Default)]
struct Share {
    planned: i64,
    done: i64,
    failed: i64,
    estimated: bool,
}

/// The progress of a campaign of `kind` from its stages, given parents first
/// (see the module documentation for the definition).
pub fn campaign_progress(kind: TaskKind, stages: &[StageUnits]) -> Progress {
    let unit = if kind == TaskKind::Mc || stages.iter().any(|s| s.generates.is_some()) {
        Unit::Events
    } else {
        Unit::Files
    };
    let generated: i64 = stages.iter().filter_map(|s| s.generates).sum();
    let mut shares: Vec<Share> = Vec::with_capacity(stages.len());
    for (i, stage) in stages.iter().enumerate() {
        let from_parents: i64 = stage
            .parents
            .iter()
            .filter(|&&p| p < i)
            .map(|&p| shares[p].planned)
            .sum();
        let share = match unit {
            Unit::Events => event_share(stage, from_parents, generated),
            Unit::Files => file_share(stage, from_parents),
        };
        shares.push(share);
    }
    let mut progress = Progress::nothing(unit);
    for s in shares {
        progress.planned += s.planned;
        progress.done += s.done;
        progress.failed += s.failed;
        progress.estimated |= s.estimated;
    }
    progress
}

/// A stage of a Monte-Carlo campaign: the events it generates or processes.
fn event_share(stage: &StageUnits, from_parents: i64, generated: i64) -> Share {
    let jobs = stage.jobs.unwrap_or_default();
    match stage.generates {
        Some(events) => Share {
            planned: events,
            done: jobs.done.min(events),
            failed: jobs.failed.min(events),
            estimated: false,
        },
        None => {
            let planned = if stage.parents.is_empty() {
                generated
            } else {
                from_parents
            };
            Share {
                planned,
                done: scale(jobs.done, jobs.planned, planned),
                failed: scale(jobs.failed, jobs.planned, planned),
                estimated: false,
            }
        }
    }
}

/// A stage of a data campaign: the input files it was given, or an estimate.
fn file_share(stage: &StageUnits, from_parents: i64) -> Share {
    match stage.jobs {
        Some(jobs) => Share {
            planned: jobs.planned,
            done: jobs.done,
            failed: jobs.failed,
            estimated: false,
        },
        None => Share {
            planned: from_parents,
            estimated: true,
            ..Share::default()
        },
    }
}

/// `part` of `whole` expressed as a share of `to`, rounded down.
fn scale(part: i64, whole: i64, to: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    let scaled = i128::from(part.clamp(0, whole)) * i128::from(to) / i128::from(whole);
    i64::try_from(scaled).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(planned: i64, done: i64, failed: i64) -> Option<JobUnits> {
        Some(JobUnits {
            planned,
            done,
            failed,
        })
    }

    /// gen (1000 events, 10 jobs) → sim (1 file per job) → reco (2 files per job).
    fn chain(gen: Option<JobUnits>, sim: Option<JobUnits>, reco: Option<JobUnits>) -> Progress {
        let stages = [
            StageUnits {
                parents: vec![],
                generates: Some(1000),
                jobs: gen,
            },
            StageUnits {
                parents: vec![0],
                generates: None,
                jobs: sim,
            },
            StageUnits {
                parents: vec![1],
                generates: None,
                jobs: reco,
            },
        ];
        campaign_progress(TaskKind::Mc, &stages)
    }

    #[test]
    fn m1_a_monte_carlo_chain_plans_its_events_once_per_stage_from_approval() {
        let p = chain(None, None, None);
        assert_eq!(
            (p.unit, p.done, p.planned, p.failed),
            (Unit::Events, 0, 3000, 0)
        );
        assert!(!p.estimated, "events are known from the request");
        assert_eq!(p.percent(), 0.0);
    }

    #[test]
    fn m1_later_monte_carlo_stages_count_their_share_of_files_in_events() {
        let p = chain(split(1000, 1000, 0), split(10, 5, 0), None);
        assert_eq!((p.done, p.planned), (1500, 3000));
        assert_eq!(p.percent(), 50.0);
        assert_eq!(p.to_string(), "50.0% (1500/3000 events)");
    }

    #[test]
    fn m1_units_failed_for_good_are_shown_beside_done_not_inside_it() {
        let p = chain(split(1000, 900, 100), None, None);
        assert_eq!((p.done, p.failed, p.planned), (900, 100, 3000));
        assert_eq!(p.percent(), 30.0);
        assert_eq!(
            p.to_string(),
            "30.0% (900/3000 events, 100 failed for good)"
        );
    }

    #[test]
    fn m1_percent_is_100_only_when_every_unit_is_done() {
        assert_eq!(
            chain(split(1000, 1000, 0), split(10, 10, 0), split(10, 10, 0)).percent(),
            100.0
        );
        let p = Progress {
            done: 2999,
            ..chain(None, None, None)
        };
        assert_eq!(p.percent(), 99.9, "rounded down, never up to 100");
        assert_eq!(Progress::nothing(Unit::Files).percent(), 0.0);
    }

    #[test]
    fn m1_data_stages_count_input_files_and_estimate_unsplit_ones_from_their_parents() {
        let reco = StageUnits {
            parents: vec![],
            generates: None,
            jobs: split(95, 40, 5),
        };
        let validate = StageUnits {
            parents: vec![0],
            generates: None,
            jobs: None,
        };
        let p = campaign_progress(TaskKind::Reco, &[reco.clone(), validate.clone()]);
        assert_eq!(
            (p.unit, p.done, p.planned, p.failed),
            (Unit::Files, 40, 190, 5)
        );
        assert!(p.estimated);
        assert_eq!(
            p.to_string(),
            "21.0% (40/190 files, 5 failed for good, estimated)"
        );
        let split_validate = StageUnits {
            jobs: split(90, 0, 0),
            ..validate
        };
        let p = campaign_progress(TaskKind::Reco, &[reco, split_validate]);
        assert_eq!((p.planned, p.estimated), (185, false), "known once split");
    }

    #[test]
    fn m1_a_data_campaign_not_split_yet_plans_nothing_and_says_so() {
        let first = StageUnits::default();
        let p = campaign_progress(TaskKind::Reco, &[first]);
        assert_eq!((p.unit, p.planned, p.estimated), (Unit::Files, 0, true));
        let none = campaign_progress(TaskKind::Mc, &[]);
        assert_eq!((none.unit, none.planned), (Unit::Events, 0));
    }

    #[test]
    fn m1_a_merge_after_two_generations_processes_both_their_events() {
        let gen = |events| StageUnits {
            parents: vec![],
            generates: Some(events),
            jobs: None,
        };
        let merge = StageUnits {
            parents: vec![0, 1],
            generates: None,
            jobs: split(4, 1, 0),
        };
        let p = campaign_progress(TaskKind::Mc, &[gen(1000), gen(500), merge]);
        assert_eq!((p.planned, p.done), (3000, 375));
    }

    #[test]
    fn m1_progress_json_carries_the_percent_it_prints() {
        let p = chain(split(1000, 1000, 0), split(10, 5, 0), None);
        let json = serde_json::to_value(p).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "unit": "events", "done": 1500, "planned": 3000,
                                "failed": 0, "percent": 50.0, "estimated": false })
        );
    }
}
