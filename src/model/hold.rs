//! What a campaign hold stops, and what a person may ask of one job
//! (issue 14).
//!
//! A hold always stops submissions and holds the campaign's queued jobs.
//! Running jobs go on to their end unless the operator asks for them too,
//! because holding a running job means different things to different batch
//! systems (see `batch::running_hold_effect`): HTCondor evicts it and starts
//! it again from the beginning, Slurm can only requeue or cancel it.

use super::state::{JobState, Lifecycle};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which of a held campaign's jobs the worker holds in the batch system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldScope {
    /// Submissions stop and queued jobs are held; running jobs run to their end.
    #[default]
    Queued,
    /// Running jobs are held too, as their batch system holds a running job.
    Running,
}

impl HoldScope {
    /// Every scope.
    pub const ALL: [HoldScope; 2] = [HoldScope::Queued, HoldScope::Running];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldScope::Queued => "queued",
            HoldScope::Running => "running",
        }
    }

    /// Reads a stored name back.
    pub fn parse(s: &str) -> Option<HoldScope> {
        HoldScope::ALL.into_iter().find(|h| h.as_str() == s)
    }

    /// True when a job in `state` of a campaign held with this scope is to
    /// be held in its batch system.
    pub fn holds(self, state: JobState) -> bool {
        match state {
            JobState::Queued => true,
            JobState::Running => self == HoldScope::Running,
            _ => false,
        }
    }

    /// What the hold does, in words for confirmations and the audit trail.
    pub fn describe(self) -> &'static str {
        match self {
            HoldScope::Queued => {
                "submissions stop and queued jobs are held; running jobs run to their end"
            }
            HoldScope::Running => "submissions stop and queued and running jobs are held",
        }
    }
}

impl fmt::Display for HoldScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a person asks of one job (`D` on a job row, `prodops hold|release|remove J…`).
/// Ops records it on the job; the worker carries it out through the batch
/// system on its next pass, as it does a campaign's hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobAction {
    /// Hold it in its batch system (a running one as the system can).
    Hold,
    /// Let a held job run again.
    Release,
    /// Remove it from its batch system for good (`condor_rm`, `scancel`).
    Remove,
}

impl JobAction {
    /// Every action.
    pub const ALL: [JobAction; 3] = [JobAction::Hold, JobAction::Release, JobAction::Remove];

    /// The verb, for messages and the audit trail.
    pub fn verb(self) -> &'static str {
        match self {
            JobAction::Hold => "hold",
            JobAction::Release => "release",
            JobAction::Remove => "remove",
        }
    }

    /// What is stored on the job until the worker carries it out.
    pub fn desired(self) -> &'static str {
        match self {
            JobAction::Hold => "held",
            JobAction::Release => "released",
            JobAction::Remove => "removed",
        }
    }

    /// Reads a stored [`JobAction::desired`] back.
    pub fn from_desired(s: &str) -> Option<JobAction> {
        JobAction::ALL.into_iter().find(|a| a.desired() == s)
    }

    /// Why this action cannot be taken on job `job` in `state`, which a
    /// person already asked `asked` of, and whose campaign (or subtask)
    /// `campaign` holds it when `held_with` is true; `None` when it can.
    pub fn refusal(
        self,
        job: &str,
        state: JobState,
        asked: Option<JobAction>,
        held_with: Option<&str>,
    ) -> Option<String> {
        use JobState::*;
        if state.is_terminal() {
            return Some(format!("{job} is `{state}`: it has ended"));
        }
        if asked == Some(JobAction::Remove) {
            return Some(format!("{job} is being removed"));
        }
        match (self, state) {
            (JobAction::Hold, _) if asked == Some(JobAction::Hold) => {
                Some(format!("{job} is already held"))
            }
            (JobAction::Hold, Created | Submitting) => Some(format!(
                "{job} is `{state}`: it is not in a batch system yet; hold its campaign to keep it from being submitted"
            )),
            (JobAction::Release, _) if held_with.is_some() => Some(format!(
                "{job} is held with its campaign: release {}",
                held_with.unwrap_or_default()
            )),
            (JobAction::Release, Held) => None,
            (JobAction::Release, _) if asked == Some(JobAction::Hold) => None,
            (JobAction::Release, _) => Some(format!("{job} is `{state}`: it is not held")),
            (JobAction::Remove, Submitting) => Some(format!(
                "{job} is being submitted: try again in a moment"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x6_a_job_is_held_only_in_a_batch_system_released_only_when_held_and_removed_until_it_ends() {
        let hold = |state, asked| JobAction::Hold.refusal("J5", state, asked, None);
        assert_eq!(hold(JobState::Running, None), None);
        assert_eq!(hold(JobState::Queued, None), None);
        assert_eq!(
            hold(JobState::Held, None),
            None,
            "keeps it held after its campaign's release"
        );
        assert!(hold(JobState::Created, None)
            .unwrap()
            .contains("not in a batch system yet"));
        assert_eq!(
            hold(JobState::Running, Some(JobAction::Hold)).as_deref(),
            Some("J5 is already held")
        );
        assert_eq!(
            hold(JobState::Succeeded, None).as_deref(),
            Some("J5 is `succeeded`: it has ended")
        );
        let release = |state, asked, with| JobAction::Release.refusal("J5", state, asked, with);
        assert_eq!(release(JobState::Held, Some(JobAction::Hold), None), None);
        assert_eq!(
            release(JobState::Running, Some(JobAction::Hold), None),
            None,
            "not yet carried out"
        );
        assert_eq!(
            release(JobState::Running, None, None).as_deref(),
            Some("J5 is `running`: it is not held")
        );
        assert_eq!(
            release(JobState::Held, None, Some("C1")).as_deref(),
            Some("J5 is held with its campaign: release C1")
        );
        let remove = |state, asked| JobAction::Remove.refusal("J5", state, asked, None);
        for state in [
            JobState::Created,
            JobState::Queued,
            JobState::Running,
            JobState::Held,
        ] {
            assert_eq!(remove(state, None), None, "{state}");
        }
        assert!(remove(JobState::Submitting, None)
            .unwrap()
            .contains("being submitted"));
        assert_eq!(
            remove(JobState::Running, Some(JobAction::Remove)).as_deref(),
            Some("J5 is being removed")
        );
        for action in JobAction::ALL {
            assert_eq!(JobAction::from_desired(action.desired()), Some(action));
        }
    }

    #[test]
    fn x6_a_default_hold_holds_queued_jobs_and_lets_running_ones_end() {
        assert_eq!(HoldScope::default(), HoldScope::Queued);
        assert!(HoldScope::Queued.holds(JobState::Queued));
        assert!(!HoldScope::Queued.holds(JobState::Running));
        assert!(HoldScope::Running.holds(JobState::Running));
        for scope in HoldScope::ALL {
            assert!(
                !scope.holds(JobState::Created),
                "created jobs wait unsubmitted"
            );
            assert!(!scope.holds(JobState::Succeeded));
            assert_eq!(HoldScope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(HoldScope::parse("all"), None);
    }
}
