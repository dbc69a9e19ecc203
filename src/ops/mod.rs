//! The application actions shared by the CLI, the console and batch mode.
//!
//! Each action checks the actor's role, changes state and writes its audit row
//! in one transaction; a refused action is rolled back and its refusal audited.

pub mod campaigns;
pub mod demo;
pub mod directory;
pub mod jobs;
pub mod overview;
pub mod requests;
pub mod views;

use crate::model::request::RequestError;
use crate::model::role::{permits, Action, Role, Target};
use crate::store::{audit, directory as dir, Store, StoreError, Tx};

/// Who is acting: the OS user running prodops, possibly acting as another user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The identity whose roles are checked.
    pub name: String,
    /// The OS user when an admin acts as someone else.
    pub real: Option<String>,
}

impl Actor {
    /// A named actor (tests, the worker).
    pub fn named(name: &str) -> Actor {
        Actor {
            name: name.to_string(),
            real: None,
        }
    }

    /// The OS user running this process, read from the system, not the environment.
    pub fn from_os() -> Actor {
        Actor::named(&whoami::username())
    }

    /// How the actor appears in history and audit rows.
    pub fn display(&self) -> String {
        match &self.real {
            Some(real) => format!("{real} as {}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Why an action did not happen. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The actor lacks the role.
    #[error("forbidden: {user} may not {action} {target}; this needs the role {roles} in {scope}")]
    Forbidden {
        /// Who tried.
        user: String,
        /// What they tried.
        action: &'static str,
        /// On what.
        target: String,
        /// Roles that would allow it.
        roles: String,
        /// Where those roles are needed.
        scope: String,
    },
    /// A request file was refused.
    #[error("{path}: {error}")]
    RequestFile {
        /// The file.
        path: String,
        /// The field and the fix.
        error: RequestError,
    },
    /// An argument or the current state does not allow the action.
    #[error("{0}")]
    Invalid(String),
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::model::state::IllegalTransition> for OpsError {
    fn from(e: crate::model::state::IllegalTransition) -> Self {
        OpsError::Store(StoreError::Illegal(e))
    }
}

impl OpsError {
    /// True when the action was refused for lack of a role.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, OpsError::Forbidden { .. })
    }
}

/// The actions of one actor on one store.
#[derive(Debug, Clone)]
pub struct Ops {
    store: Store,
    actor: Actor,
    /// Per-experiment request policy (script roots, grace period; issue 15).
    policies: std::sync::Arc<crate::model::request_policy::Policies>,
}

impl Ops {
    /// Actions as `actor`.
    pub fn new(store: Store, actor: Actor) -> Ops {
        Ops {
            store,
            actor,
            policies: Default::default(),
        }
    }

    /// The same actions under the configuration's per-experiment policies
    /// (without: scripts from the request's directory, no grace period).
    pub fn with_policies(mut self, policies: crate::model::request_policy::Policies) -> Ops {
        self.policies = std::sync::Arc::new(policies);
        self
    }

    /// The per-experiment policies in effect.
    pub fn policies(&self) -> &crate::model::request_policy::Policies {
        &self.policies
    }

    /// Actions as `as_user` on behalf of the real `actor`, allowed only for admins.
    pub async fn impersonate(store: Store, actor: Actor, as_user: &str) -> Result<Ops, OpsError> {
        let ops = Ops::new(store, actor.clone());
        let result = ops.require_admin("act as", as_user).await;
        let result = ops.finish(Action::ManageUsers, as_user, result).await;
        result?;
        Ok(Ops {
            actor: Actor {
                name: as_user.to_string(),
                real: Some(actor.name),
            },
            ..ops
        })
    }

    async fn require_admin(&self, action: &'static str, target: &str) -> Result<(), OpsError> {
        let mut tx = self.store.begin().await?;
        let grants = dir::grants_of(&mut tx, &self.actor.name).await?;
        crate::store::rollback(tx).await?;
        if permits(&grants, Action::ManageUsers, Target::GLOBAL) {
            Ok(())
        } else {
            Err(OpsError::Forbidden {
                user: self.actor.display(),
                action,
                target: target.to_string(),
                roles: Role::Admin.as_str().to_string(),
                scope: "any experiment".to_string(),
            })
        }
    }

    /// The store these actions use.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The actor.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Refuses inside `tx` unless the actor's grants permit `action` on `target`.
    async fn authorize(
        &self,
        tx: &mut Tx<'_>,
        action: Action,
        target: Target<'_>,
        target_name: &str,
    ) -> Result<(), OpsError> {
        let grants = dir::grants_of(tx, &self.actor.name).await?;
        if permits(&grants, action, target) {
            return Ok(());
        }
        let roles: Vec<&str> = action.roles().iter().map(|r| r.as_str()).collect();
        let scope = match (target.experiment, target.kind) {
            (Some(e), Some(k)) => format!("experiment {e} (kind {k})"),
            (Some(e), None) => format!("experiment {e}"),
            _ => "any experiment".to_string(),
        };
        Err(OpsError::Forbidden {
            user: self.actor.display(),
            action: action.as_str(),
            target: target_name.to_string(),
            roles: roles.join(" or "),
            scope,
        })
    }

    /// Writes the audit row of a successful action inside its transaction.
    async fn audit_ok(
        &self,
        tx: &mut Tx<'_>,
        action: Action,
        target: &str,
        detail: &str,
    ) -> Result<(), OpsError> {
        audit::record(
            tx,
            &self.actor.display(),
            action.as_str(),
            target,
            true,
            detail,
        )
        .await?;
        Ok(())
    }

    /// Passes a result through, auditing a refusal in its own transaction
    /// (the action's transaction has already been rolled back).
    async fn finish<T>(
        &self,
        action: Action,
        target: &str,
        result: Result<T, OpsError>,
    ) -> Result<T, OpsError> {
        if let Err(OpsError::Forbidden { .. }) = &result {
            let mut tx = self.store.begin().await?;
            audit::record(
                &mut tx,
                &self.actor.display(),
                action.as_str(),
                target,
                false,
                "refused: missing role",
            )
            .await?;
            crate::store::commit(tx).await?;
        }
        result
    }
}
