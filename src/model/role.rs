//! Roles and what each may do (J12, J13, J14, W1, W4, CP1).
//!
//! Grants are per experiment (or `*` for all) and, for approvers, optionally
//! per production stage, i.e. request kind (W1). [`permits`] is the one place
//! that decides whether an action is allowed.

use super::spec::TaskKind;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a person is in an experiment's production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Files requests and follows them.
    Experimenter,
    /// Approves, rejects, consolidates and prioritises requests.
    Approver,
    /// Runs production: holds, releases, resubmits, prioritises.
    Operator,
    /// Reads progress and reports.
    Supervisor,
    /// Reviews results and signs off.
    Reviewer,
    /// Looks only.
    Guest,
    /// Service provider: manages users and experiments.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 7] = [
        Role::Experimenter,
        Role::Approver,
        Role::Operator,
        Role::Supervisor,
        Role::Reviewer,
        Role::Guest,
        Role::Admin,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Experimenter => "experimenter",
            Role::Approver => "approver",
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::Reviewer => "reviewer",
            Role::Guest => "guest",
            Role::Admin => "admin",
        }
    }

    /// Reads a stored name back.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The experiment name that stands for every experiment in a grant.
pub const ALL_EXPERIMENTS: &str = "*";

/// One role held by a user, in one experiment (or all), for one kind (or all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The role.
    pub role: Role,
    /// Experiment name, or `*`.
    pub experiment: String,
    /// For approvers registered per production stage: the kind they approve.
    pub kind: Option<TaskKind>,
}

/// Management and viewing actions that are checked against grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// File a new request (J15).
    CreateRequest,
    /// Change a request's spec.
    EditRequest,
    /// Copy a request (W6).
    CloneRequest,
    /// Approve a request (J12, J13).
    Approve,
    /// Reject a request.
    Reject,
    /// Fold requests into one (W2).
    Consolidate,
    /// Change a queued request's priority (J14, W4).
    SetPriority,
    /// Hold work.
    Hold,
    /// Release held work.
    Release,
    /// Cancel or abort work (X6).
    Cancel,
    /// Remove jobs from their batch system for good.
    Remove,
    /// Resubmit failed parts (D3).
    Resubmit,
    /// Sign a task off as complete (T5).
    SignOff,
    /// Look at an experiment's work.
    View,
    /// Add users and grants.
    ManageUsers,
    /// Register experiments.
    ManageExperiments,
}

impl Action {
    /// The name recorded in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CreateRequest => "create_request",
            Action::EditRequest => "edit_request",
            Action::CloneRequest => "clone_request",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Consolidate => "consolidate",
            Action::SetPriority => "set_priority",
            Action::Hold => "hold",
            Action::Release => "release",
            Action::Cancel => "cancel",
            Action::Remove => "remove",
            Action::Resubmit => "resubmit",
            Action::SignOff => "signoff",
            Action::View => "view",
            Action::ManageUsers => "manage_users",
            Action::ManageExperiments => "manage_experiments",
        }
    }

    /// Roles that may take this action; `owner_may` says the request's creator may too.
    fn rule(self) -> (&'static [Role], bool) {
        use Role::*;
        match self {
            Action::CreateRequest | Action::CloneRequest => {
                (&[Experimenter, Approver, Operator], false)
            }
            Action::EditRequest => (&[Approver, Operator], true),
            Action::Approve | Action::Reject | Action::Consolidate => (&[Approver], false),
            Action::SetPriority => (&[Approver, Operator], false),
            Action::Hold | Action::Release | Action::Cancel | Action::Remove => {
                (&[Approver, Operator], true)
            }
            Action::Resubmit => (&[Operator], false),
            Action::SignOff => (&[Reviewer, Approver, Operator], false),
            Action::View => (
                &[
                    Experimenter,
                    Approver,
                    Operator,
                    Supervisor,
                    Reviewer,
                    Guest,
                ],
                false,
            ),
            Action::ManageUsers | Action::ManageExperiments => (&[Admin], false),
        }
    }

    /// The roles that may take this action, for the refusal message.
    pub fn roles(self) -> &'static [Role] {
        self.rule().0
    }
}

/// What an action is about: which experiment, which kind, and whether the actor filed it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Experiment the work belongs to; `None` for global actions.
    pub experiment: Option<&'a str>,
    /// Kind of the request, for per-stage approvers (W1).
    pub kind: Option<TaskKind>,
    /// The actor filed this request.
    pub actor_is_creator: bool,
}

impl Target<'_> {
    /// A global action (users, experiments).
    pub const GLOBAL: Target<'static> = Target {
        experiment: None,
        kind: None,
        actor_is_creator: false,
    };
}

/// Decides whether someone holding `grants` may take `action` on `target`.
pub fn permits(grants: &[Grant], action: Action, target: Target<'_>) -> bool {
    let (roles, owner_may) = action.rule();
    if owner_may && target.actor_is_creator {
        return true;
    }
    grants.iter().any(|g| {
        roles.contains(&g.role)
            && grant_covers_experiment(g, target.experiment)
            && (g.kind.is_none() || target.kind.is_none() || g.kind == target.kind)
    })
}

fn grant_covers_experiment(g: &Grant, experiment: Option<&str>) -> bool {
    g.experiment == ALL_EXPERIMENTS || experiment.is_none_or(|e| e == g.experiment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: Role, exp: &str, kind: Option<TaskKind>) -> Grant {
        Grant {
            role,
            experiment: exp.into(),
            kind,
        }
    }

    fn on(exp: &str, kind: TaskKind) -> Target<'_> {
        Target {
            experiment: Some(exp),
            kind: Some(kind),
            actor_is_creator: false,
        }
    }

    #[test]
    fn j13_only_approvers_of_the_experiment_approve() {
        let approver = [grant(Role::Approver, "nova", None)];
        let operator = [grant(Role::Operator, "nova", None)];
        assert!(permits(
            &approver,
            Action::Approve,
            on("nova", TaskKind::Mc)
        ));
        assert!(!permits(
            &approver,
            Action::Approve,
            on("dune", TaskKind::Mc)
        ));
        assert!(!permits(
            &operator,
            Action::Approve,
            on("nova", TaskKind::Mc)
        ));
    }

    #[test]
    fn w1_stage_approver_approves_only_their_kind() {
        let mc_only = [grant(Role::Approver, "nova", Some(TaskKind::Mc))];
        assert!(permits(&mc_only, Action::Approve, on("nova", TaskKind::Mc)));
        assert!(!permits(
            &mc_only,
            Action::Approve,
            on("nova", TaskKind::Reco)
        ));
    }

    #[test]
    fn x6_creator_may_back_out_of_own_request() {
        let exp = [grant(Role::Experimenter, "nova", None)];
        let mut t = on("nova", TaskKind::Mc);
        assert!(!permits(&exp, Action::Cancel, t));
        t.actor_is_creator = true;
        assert!(permits(&exp, Action::Cancel, t));
        assert!(
            !permits(&exp, Action::Approve, t),
            "creators never approve by ownership"
        );
    }

    #[test]
    fn wildcard_grant_covers_every_experiment() {
        let admin = [grant(Role::Admin, ALL_EXPERIMENTS, None)];
        assert!(permits(&admin, Action::ManageUsers, Target::GLOBAL));
        assert!(!permits(&admin, Action::Approve, on("nova", TaskKind::Mc)));
    }
}
