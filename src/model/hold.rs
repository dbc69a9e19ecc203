//! What a campaign hold stops (issue 14).
//!
//! A hold always stops submissions and holds the campaign's queued jobs.
//! Running jobs go on to their end unless the operator asks for them too,
//! because holding a running job means different things to different batch
//! systems (see `batch::running_hold_effect`): HTCondor evicts it and starts
//! it again from the beginning, Slurm can only requeue or cancel it.

use super::state::JobState;
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

#[cfg(test)]
mod tests {
    use super::*;

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
