//! State machines of campaigns, tasks, subtasks, batches and jobs (T2, T6, M7).
//!
//! Each machine is an explicit transition table: the table *is* the
//! documentation, and [`check_transition`] is the only judge of a state change.

use super::ids::EntityKind;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A state machine whose states are stored as text and whose legal moves are a table.
pub trait Lifecycle: Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// The entity kind that carries this state.
    const KIND: EntityKind;
    /// Every state, for listings and completion.
    const ALL: &'static [Self];
    /// The stored name of the state.
    fn as_str(self) -> &'static str;
    /// The states this one may move to.
    fn next(self) -> &'static [Self];
    /// Reads a stored name back.
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|st| st.as_str() == s)
    }
    /// A state nothing leaves.
    fn is_terminal(self) -> bool {
        self.next().is_empty()
    }
}

/// A state change the table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {kind} cannot go from `{from}` to `{to}`{}", allowed_hint(.allowed))]
pub struct IllegalTransition {
    /// The entity kind.
    pub kind: &'static str,
    /// The current state.
    pub from: &'static str,
    /// The requested state.
    pub to: &'static str,
    /// What the current state may move to.
    pub allowed: Vec<&'static str>,
}

fn allowed_hint(allowed: &[&'static str]) -> String {
    if allowed.is_empty() {
        " (it is final)".to_string()
    } else {
        format!(" (from there it may go to: {})", allowed.join(", "))
    }
}

/// Checks one state change against the machine's table.
pub fn check_transition<S: Lifecycle>(from: S, to: S) -> Result<(), IllegalTransition> {
    if from.next().contains(&to) {
        Ok(())
    } else {
        Err(IllegalTransition {
            kind: S::KIND.as_str(),
            from: from.as_str(),
            to: to.as_str(),
            allowed: from.next().iter().map(|s| s.as_str()).collect(),
        })
    }
}

macro_rules! lifecycle {
    (
        $(#[$doc:meta])* $name:ident, $kind:expr,
        { $( $(#[$vdoc:meta])* $variant:ident = $text:literal => [ $($to:ident),* ] ),+ $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $( $(#[$vdoc])* $variant ),+ }

        impl Lifecycle for $name {
            const KIND: EntityKind = $kind;
            const ALL: &'static [Self] = &[ $( $name::$variant ),+ ];
            fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }
            fn next(self) -> &'static [Self] {
                match self { $( $name::$variant => &[ $( $name::$to ),* ] ),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

lifecycle!(
    /// A request and, once approved, the campaign that runs it (T2).
    CampaignState, EntityKind::Campaign, {
        /// Just filed; moves on in the same transaction.
        New = "new" => [PendingApproval, Approved, Cancelled],
        /// Waiting for an approver (always for Monte-Carlo, J12).
        PendingApproval = "pending_approval" => [Approved, Rejected, Consolidated, Held, Cancelled],
        /// Spec frozen; waiting for the worker to start it.
        Approved = "approved" => [Running, Held, Cancelled, PendingApproval],
        /// Jobs exist.
        Running = "running" => [Succeeded, Failed, Held, Cancelled],
        /// Stopped by a person; release returns it to where it was.
        Held = "held" => [PendingApproval, Approved, Running, Cancelled],
        /// All tasks met their completion criteria.
        Succeeded = "succeeded" => [],
        /// A task failed for good; resubmission runs it again.
        Failed = "failed" => [Running, Cancelled],
        /// An approver said no.
        Rejected = "rejected" => [],
        /// Folded into another request by an approver (W2).
        Consolidated = "consolidated" => [],
        /// Withdrawn or aborted.
        Cancelled = "cancelled" => [],
    }
);

lifecycle!(
    /// A task of a campaign.
    TaskState, EntityKind::Task, {
        /// Created at approval; waits for the worker to pull it (J16).
        Queued = "queued" => [Running, Held, Cancelled],
        /// Some subtask has started.
        Running = "running" => [Succeeded, Failed, Held, Cancelled],
        /// Stopped by a person.
        Held = "held" => [Queued, Running, Cancelled],
        /// Every subtask succeeded.
        Succeeded = "succeeded" => [],
        /// A subtask failed for good.
        Failed = "failed" => [Running, Cancelled],
        /// Aborted, or superseded by an edited spec.
        Cancelled = "cancelled" => [],
    }
);

lifecycle!(
    /// A subtask, one node of its task's DAG (J1, J8).
    SubtaskState, EntityKind::Subtask, {
        /// Some DAG parent has not succeeded yet.
        Waiting = "waiting" => [Ready, Held, Cancelled],
        /// All parents succeeded; may be submitted.
        Ready = "ready" => [Running, Held, Cancelled],
        /// Jobs have been submitted.
        Running = "running" => [Succeeded, Failed, Held, Cancelled],
        /// Stopped by a person or a failing pre-launch check.
        Held = "held" => [Waiting, Ready, Running, Cancelled],
        /// Its completion criteria hold.
        Succeeded = "succeeded" => [],
        /// Jobs failed beyond their retries (or it could not be split).
        Failed = "failed" => [Running, Ready, Cancelled],
        /// Aborted.
        Cancelled = "cancelled" => [],
    }
);

lifecycle!(
    /// A batch: a slice of a subtask's input submitted at once (T6).
    BatchState, EntityKind::Batch, {
        /// Jobs made, not yet submitted.
        Pending = "pending" => [Submitted, Held, Cancelled],
        /// Handed to the batch system.
        Submitted = "submitted" => [ProjectRunning, JobsCompleted, Failed, Held, Cancelled],
        /// Its catalog project is delivering files.
        ProjectRunning = "project_running" => [JobsCompleted, Failed, Held, Cancelled],
        /// Every job ended; criteria not yet judged.
        JobsCompleted = "jobs_completed" => [Completed, Failed, Submitted],
        /// Completion criteria hold.
        Completed = "completed" => [],
        /// Criteria cannot be met without resubmission.
        Failed = "failed" => [Submitted, Cancelled],
        /// Stopped by a person.
        Held = "held" => [Pending, Submitted, ProjectRunning, Cancelled],
        /// Aborted.
        Cancelled = "cancelled" => [],
    }
);

lifecycle!(
    /// One batch-system job, held and removed included.
    JobState, EntityKind::Job, {
        /// Known to us, not yet handed to a batch system.
        Created = "created" => [Submitting, Cancelled],
        /// Intent written; the batch system is being called.
        Submitting = "submitting" => [Queued, Created, Failed, Cancelled],
        /// Accepted by the batch system, not running.
        Queued = "queued" => [Running, Succeeded, Failed, Held, Removed],
        /// Running on a node. Back to `queued` when the batch system puts it
        /// back in its queue (evicted, or its node lost: HTCondor's 024).
        Running = "running" => [Queued, Succeeded, Failed, Held, Removed],
        /// Held in the batch system. A job that ended before the hold took
        /// effect (or ran on under it) records its real end.
        Held = "held" => [Queued, Running, Succeeded, Failed, Removed],
        /// Ended with success.
        Succeeded = "succeeded" => [],
        /// Ended with failure (exit code, signal, memory).
        Failed = "failed" => [],
        /// Removed from the batch system by a person.
        Removed = "removed" => [],
        /// Never submitted; withdrawn.
        Cancelled = "cancelled" => [],
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn every_pair<S: Lifecycle>() -> impl Iterator<Item = (S, S)> {
        S::ALL
            .iter()
            .flat_map(|a| S::ALL.iter().map(move |b| (*a, *b)))
    }

    fn table_is_consistent<S: Lifecycle>() {
        for (from, to) in every_pair::<S>() {
            let allowed = from.next().contains(&to);
            assert_eq!(
                check_transition(from, to).is_ok(),
                allowed,
                "{from:?}->{to:?}"
            );
            if from == to {
                assert!(
                    !allowed,
                    "{from:?} lists itself: self-loops are not transitions"
                );
            }
        }
        for st in S::ALL {
            assert_eq!(S::parse(st.as_str()), Some(*st));
        }
    }

    #[test]
    fn t2_t6_transition_tables_are_self_consistent() {
        table_is_consistent::<CampaignState>();
        table_is_consistent::<TaskState>();
        table_is_consistent::<SubtaskState>();
        table_is_consistent::<BatchState>();
        table_is_consistent::<JobState>();
    }

    #[test]
    fn j12_campaign_cannot_run_without_approval() {
        assert!(check_transition(CampaignState::New, CampaignState::Running).is_err());
        assert!(check_transition(CampaignState::PendingApproval, CampaignState::Running).is_err());
        assert!(check_transition(CampaignState::Approved, CampaignState::Running).is_ok());
    }

    #[test]
    fn illegal_transition_message_names_states_and_options() {
        let e = check_transition(CampaignState::Succeeded, CampaignState::Running).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a campaign cannot go from `succeeded` to `running` (it is final)"
        );
        let e = check_transition(JobState::Created, JobState::Running).unwrap_err();
        assert!(e.to_string().contains("may go to: submitting, cancelled"));
    }
}
