//! Registering experiments and users, and granting roles.

use super::{Ops, OpsError};
use crate::model::request::check_name;
use crate::model::role::{Action, Grant, Role, Target, ALL_EXPERIMENTS};
use crate::model::spec::TaskKind;
use crate::store::directory::{self as dir, Experiment, User};

impl Ops {
    /// Registers an experiment; `auto_approve` lists kinds that need no approver (never MC).
    pub async fn experiment_add(
        &self,
        name: &str,
        auto_approve: &[TaskKind],
    ) -> Result<Experiment, OpsError> {
        let result = self.experiment_add_inner(name, auto_approve).await;
        self.finish(Action::ManageExperiments, name, result).await
    }

    async fn experiment_add_inner(
        &self,
        name: &str,
        auto_approve: &[TaskKind],
    ) -> Result<Experiment, OpsError> {
        check_name("experiment", name).map_err(|e| OpsError::Invalid(e.to_string()))?;
        if auto_approve.iter().any(|k| k.always_needs_approval()) {
            return Err(OpsError::Invalid(
                "--auto-approve: Monte-Carlo always needs an approver (J12); remove `mc`".into(),
            ));
        }
        let mut tx = self.store.begin().await?;
        self.authorize(&mut tx, Action::ManageExperiments, Target::GLOBAL, name)
            .await?;
        let id = dir::insert_experiment(&mut tx, name, auto_approve).await?;
        let kinds: Vec<&str> = auto_approve.iter().map(|k| k.as_str()).collect();
        self.audit_ok(
            &mut tx,
            Action::ManageExperiments,
            name,
            &format!("added; auto-approve: [{}]", kinds.join(",")),
        )
        .await?;
        crate::store::commit(tx).await?;
        Ok(Experiment {
            id,
            name: name.to_string(),
            auto_approve: auto_approve.to_vec(),
        })
    }

    /// Every experiment.
    pub async fn experiments(&self) -> Result<Vec<Experiment>, OpsError> {
        Ok(dir::list_experiments(self.store.pool()).await?)
    }

    /// Gives `user` a role. On an empty user table the caller first becomes admin,
    /// so a fresh installation can be set up by whoever installed it.
    pub async fn user_add(
        &self,
        user: &str,
        grant: &Grant,
        dn: Option<&str>,
        token_subject: Option<&str>,
    ) -> Result<User, OpsError> {
        let result = self.user_add_inner(user, grant, dn, token_subject).await;
        self.finish(Action::ManageUsers, user, result).await
    }

    async fn user_add_inner(
        &self,
        user: &str,
        grant: &Grant,
        dn: Option<&str>,
        token_subject: Option<&str>,
    ) -> Result<User, OpsError> {
        check_user_name(user)?;
        let mut tx = self.store.begin().await?;
        if dir::count_users(&mut tx).await? == 0 {
            let admin = Grant {
                role: Role::Admin,
                experiment: ALL_EXPERIMENTS.to_string(),
                kind: None,
            };
            dir::upsert_user(&mut tx, &self.actor.name, None, None).await?;
            dir::add_grant(&mut tx, &self.actor.name, &admin).await?;
            self.audit_ok(
                &mut tx,
                Action::ManageUsers,
                &self.actor.name,
                "bootstrap: first user becomes admin",
            )
            .await?;
        }
        self.authorize(&mut tx, Action::ManageUsers, Target::GLOBAL, user)
            .await?;
        if grant.experiment != ALL_EXPERIMENTS
            && dir::find_experiment(&mut tx, &grant.experiment)
                .await?
                .is_none()
        {
            return Err(OpsError::Invalid(format!(
                "--experiment: `{}` is not registered; add it with `prodops experiment add {}`",
                grant.experiment, grant.experiment
            )));
        }
        dir::upsert_user(&mut tx, user, dn, token_subject).await?;
        let added = dir::add_grant(&mut tx, user, grant).await?;
        let detail = format!(
            "{} {} in {}{}",
            if added { "granted" } else { "already held" },
            grant.role,
            grant.experiment,
            grant.kind.map(|k| format!(" for {k}")).unwrap_or_default()
        );
        self.audit_ok(&mut tx, Action::ManageUsers, user, &detail)
            .await?;
        crate::store::commit(tx).await?;
        let users = dir::list_users(self.store.pool()).await?;
        users
            .into_iter()
            .find(|u| u.name == user)
            .ok_or_else(|| OpsError::Invalid(format!("user {user} vanished")))
    }

    /// Every user with their roles.
    pub async fn users(&self) -> Result<Vec<User>, OpsError> {
        Ok(dir::list_users(self.store.pool()).await?)
    }
}

fn check_user_name(user: &str) -> Result<(), OpsError> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(OpsError::Invalid(format!(
            "user `{user}`: use a login name of 1–64 letters, digits, `_`, `-`, `.` or `@`"
        )))
    }
}
