//! Requests: file, edit, clone, and read (J12–J16, W1–W6, X3); what
//! happens to a campaign after filing is in [`super::campaigns`].

use super::campaigns::{cancel_children, materialise};
use super::views::{
    task_views, CampaignDetail, HistoryView, RequestDetail, RequestLine, RequestSummary,
};
use super::{Ops, OpsError};
use crate::model::ids::{CampaignId, EntityRef};
use crate::model::progress::{campaign_progress, Progress};
use crate::model::request::{parse_request, Format, RequestError, ValidRequest};
use crate::model::request_policy::{ScriptRoots, MAX_SCRIPT_BYTES};
use crate::model::role::{Action, Target};
use crate::model::spec::{Executable, Spec, TaskKind};
use crate::model::state::{CampaignState, Lifecycle};
use crate::store::campaigns::{self as camp, CampaignFilter, CampaignRow, NewCampaign};
use crate::store::directory as dir;
use crate::store::overview;
use crate::store::scripts as copies;
use crate::store::states::{self, set_state, state_before_last};
use crate::store::{StoreError, Tx};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

impl Ops {
    /// Reads, validates and resolves a request file (P4): scripts must exist
    /// under the experiment's script roots (issue 15).
    pub fn read_request_file(&self, path: &Path) -> Result<ValidRequest, OpsError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| OpsError::RequestFile {
            path: shown.clone(),
            error: RequestError {
                field: "file".into(),
                message: format!("cannot be read: {e}"),
            },
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        self.read_request(&bytes, &shown, &base)
    }

    /// Validates and resolves a request given as text (a file's, stdin's, an
    /// editor's): `name` labels errors and chooses the syntax (`.json`, else by
    /// content), relative script paths are resolved against `base` (P4), and
    /// every script must lie under the experiment's script roots (without a
    /// section: `base` or the current directory); each script's content is
    /// read and its hash put in the spec (issue 15).
    pub fn read_request(
        &self,
        bytes: &[u8],
        name: &str,
        base: &Path,
    ) -> Result<ValidRequest, OpsError> {
        let file_error = |error: RequestError| OpsError::RequestFile {
            path: name.to_string(),
            error,
        };
        let mut request = parse_request(bytes, Format::of(name, bytes)).map_err(file_error)?;
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        let resolved =
            |dir: &Path| std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let here = std::env::current_dir().map_or_else(|_| resolved(base), |d| resolved(&d));
        let roots = self
            .policies
            .roots_for(&request.spec.experiment, &resolved(base), &here);
        resolve_scripts(&mut request, base, &roots).map_err(file_error)?;
        Ok(request)
    }
}

/// Makes script paths absolute (relative to the request file), checks they
/// exist under `roots`, and reads each job script into the request with its
/// hash in the spec.
fn resolve_scripts(
    request: &mut ValidRequest,
    base: &Path,
    roots: &ScriptRoots,
) -> Result<(), RequestError> {
    let experiment = request.spec.experiment.clone();
    let confined = |field: &str, path: &str| {
        let resolved = existing_file(field, path, base)?;
        confine(field, path, &resolved, roots, &experiment)?;
        Ok::<String, RequestError>(resolved)
    };
    for (i, stage) in request.spec.stages.iter_mut().enumerate() {
        if let Executable::Script { path, sha256, .. } = &mut stage.executable {
            let field = format!("stage[{i}].script");
            *path = confined(&field, path)?;
            let content = read_script(&field, Path::new(path))?;
            let hash = hex::encode(Sha256::digest(&content));
            request.scripts.insert(hash.clone(), content);
            *sha256 = Some(hash);
        }
        if let Executable::Launch(launch) = &mut stage.executable {
            if launch.command.contains('/') {
                launch.command = confined(&format!("stage[{i}].launch.command"), &launch.command)?;
            }
        }
        if let Some(check) = &mut stage.complete_when.check_script {
            *check = confined(&format!("stage[{i}].complete_when.check_script"), check)?;
        }
    }
    Ok(())
}

fn existing_file(field: &str, path: &str, base: &Path) -> Result<String, RequestError> {
    let full = base.join(path);
    match std::fs::canonicalize(&full) {
        Ok(p) if p.is_file() => Ok(p.display().to_string()),
        _ => Err(RequestError {
            field: field.to_string(),
            message: format!(
                "`{path}` was not found (looked for {}): fix the path, relative to the request file",
                full.display()
            ),
        }),
    }
}

/// Refuses a script whose resolved path lies outside the allowed roots.
fn confine(
    field: &str,
    given: &str,
    resolved: &str,
    roots: &ScriptRoots,
    experiment: &str,
) -> Result<(), RequestError> {
    if roots.contain(Path::new(resolved)) {
        return Ok(());
    }
    let shown = if given == resolved {
        format!("`{given}`")
    } else {
        format!("`{given}` (resolved: {resolved})")
    };
    Err(RequestError {
        field: field.to_string(),
        message: format!(
            "{shown} is outside the directories scripts of {experiment} may come from: {}; move the script under one of them",
            roots.describe(experiment)
        ),
    })
}

/// A job script's content, at most [`MAX_SCRIPT_BYTES`] (it is shipped with every job).
fn read_script(field: &str, path: &Path) -> Result<Vec<u8>, RequestError> {
    let content = std::fs::read(path).map_err(|e| RequestError {
        field: field.to_string(),
        message: format!("`{}` cannot be read: {e}", path.display()),
    })?;
    if content.len() > MAX_SCRIPT_BYTES {
        return Err(RequestError {
            field: field.to_string(),
            message: format!(
                "`{}` is {} bytes; a job script is shipped with every job and may be at most {MAX_SCRIPT_BYTES}: name a small wrapper that runs the program from the release area",
                path.display(),
                content.len()
            ),
        });
    }
    Ok(content)
}

fn kind_of(row: &CampaignRow) -> Result<TaskKind, OpsError> {
    TaskKind::parse(&row.kind).ok_or_else(|| {
        OpsError::Store(StoreError::Corrupt(
            format!("kind of C{}", row.id),
            row.kind.clone(),
        ))
    })
}

pub(super) fn state_of(row: &CampaignRow) -> Result<CampaignState, OpsError> {
    CampaignState::parse(&row.state).ok_or_else(|| {
        OpsError::Store(StoreError::Corrupt(
            format!("state of C{}", row.id),
            row.state.clone(),
        ))
    })
}

pub(super) fn spec_of(row: &CampaignRow) -> Result<Spec, OpsError> {
    serde_json::from_str(&row.spec_json).map_err(|e| {
        OpsError::Store(StoreError::Corrupt(
            format!("spec of C{}", row.id),
            e.to_string(),
        ))
    })
}

pub(super) fn not_in_state(row: &CampaignRow, wanted: &str) -> OpsError {
    OpsError::Invalid(format!("C{} is `{}`, not {wanted}", row.id, row.state))
}

impl Ops {
    fn target<'a>(&self, row: &'a CampaignRow) -> Result<Target<'a>, OpsError> {
        Ok(Target {
            experiment: Some(&row.experiment),
            kind: Some(kind_of(row)?),
            actor_is_creator: row.creator == self.actor.name,
        })
    }

    /// Loads a request inside `tx` and checks the actor may take `action` on it.
    pub(super) async fn load_authorized(
        &self,
        tx: &mut Tx<'_>,
        id: CampaignId,
        action: Action,
    ) -> Result<CampaignRow, OpsError> {
        let row = camp::get_campaign_for_update(tx, id.0).await?;
        self.authorize(tx, action, self.target(&row)?, &id.to_string())
            .await?;
        Ok(row)
    }

    pub(super) async fn reload(&self, id: i64) -> Result<RequestDetail, OpsError> {
        let mut conn = self.store.conn().await?;
        Ok(RequestDetail::from(
            &camp::get_campaign(&mut conn, id).await?,
        ))
    }

    /// Files a new request from a TOML or JSON file (J15); MC goes to pending approval.
    pub async fn request_new(&self, path: &Path) -> Result<RequestDetail, OpsError> {
        let request = self.read_request_file(path)?;
        let result = self
            .file_request(&request, None, Action::CreateRequest)
            .await;
        let id = self
            .finish(Action::CreateRequest, &path.display().to_string(), result)
            .await?;
        self.reload(id).await
    }

    /// Files a copy of an existing request (W6): same spec, new history.
    pub async fn request_clone(
        &self,
        source: CampaignId,
        title: Option<&str>,
    ) -> Result<RequestDetail, OpsError> {
        let result = self.clone_inner(source, title).await;
        let id = self
            .finish(Action::CloneRequest, &source.to_string(), result)
            .await?;
        self.reload(id).await
    }

    async fn clone_inner(&self, source: CampaignId, title: Option<&str>) -> Result<i64, OpsError> {
        let mut conn = self.store.conn().await?;
        let row = camp::get_campaign(&mut conn, source.0).await?;
        drop(conn);
        let request = ValidRequest {
            meta: crate::model::spec::RequestMeta {
                title: title
                    .map(str::to_string)
                    .unwrap_or_else(|| row.title.clone()),
                priority: row.priority,
                physics_group: row.physics_group.clone(),
                description: row.description.clone(),
            },
            spec: spec_of(&row)?,
            priority_given: true,
            scripts: BTreeMap::new(),
        };
        self.file_request(&request, Some(source.0), Action::CloneRequest)
            .await
    }

    async fn file_request(
        &self,
        request: &ValidRequest,
        cloned_from: Option<i64>,
        action: Action,
    ) -> Result<i64, OpsError> {
        let spec = &request.spec;
        let mut tx = self.store.begin().await?;
        let experiment = dir::find_experiment(&mut tx, &spec.experiment).await?.ok_or_else(|| {
            OpsError::Invalid(format!(
                "experiment: `{}` is not registered; an admin adds it with `prodops experiment add {}`",
                spec.experiment, spec.experiment
            ))
        })?;
        let target = Target {
            experiment: Some(&spec.experiment),
            kind: Some(spec.kind),
            actor_is_creator: false,
        };
        self.authorize(&mut tx, action, target, &spec.experiment)
            .await?;
        let spec_json = spec.canonical_json();
        let hash = spec.hash();
        let who = self.actor.display();
        let reason = match cloned_from {
            Some(src) => format!("cloned from C{src}"),
            None => "request filed".to_string(),
        };
        let id = camp::insert_campaign(
            &mut tx,
            &NewCampaign {
                experiment_id: experiment.id,
                kind: spec.kind.as_str(),
                title: &request.meta.title,
                priority: request.meta.priority,
                physics_group: request.meta.physics_group.as_deref(),
                description: request.meta.description.as_deref(),
                creator: &self.actor.name,
                spec_json: &spec_json,
                spec_hash: &hash,
                cloned_from,
            },
            &reason,
        )
        .await?;
        store_copies(&mut tx, &request.scripts).await?;
        let auto =
            !spec.kind.always_needs_approval() && experiment.auto_approve.contains(&spec.kind);
        if auto {
            let why = format!(
                "approved by the policy of {} for {} requests{}",
                spec.experiment,
                spec.kind,
                self.grace_note(&spec.experiment)
            );
            set_state(&mut tx, id, CampaignState::Approved, &why, &who).await?;
            camp::set_approval(&mut tx, id, Some((&hash, "policy"))).await?;
            copies::set_start_after(&mut tx, id, self.start_after(&spec.experiment)).await?;
            materialise(&mut tx, id, spec, &who).await?;
        } else {
            set_state(
                &mut tx,
                id,
                CampaignState::PendingApproval,
                "awaiting approval",
                &who,
            )
            .await?;
        }
        self.audit_ok(
            &mut tx,
            action,
            &CampaignId(id).to_string(),
            &format!("{reason}; spec {hash}"),
        )
        .await?;
        crate::store::commit(tx).await?;
        Ok(id)
    }

    /// Replaces a request's spec from a file. A changed spec withdraws any approval (X3).
    pub async fn request_edit(
        &self,
        id: CampaignId,
        path: &Path,
    ) -> Result<RequestDetail, OpsError> {
        let request = self.read_request_file(path)?;
        self.request_edit_with(id, &request).await
    }

    /// Replaces a request's spec with an already read one (see [`Ops::read_request`]).
    pub async fn request_edit_with(
        &self,
        id: CampaignId,
        request: &ValidRequest,
    ) -> Result<RequestDetail, OpsError> {
        let result = self.edit_inner(id, request).await;
        self.finish(Action::EditRequest, &id.to_string(), result)
            .await?;
        self.reload(id.0).await
    }

    /// Refuses, before anyone edits it, a request the actor may not edit or
    /// whose spec is frozen; writes nothing but the audit row of a refusal.
    pub async fn check_editable(&self, id: CampaignId) -> Result<(), OpsError> {
        let result = async {
            let mut tx = self.store.begin().await?;
            let checked = self.editable(&mut tx, id).await.map(|_| ());
            crate::store::rollback(tx).await?;
            checked
        }
        .await;
        self.finish(Action::EditRequest, &id.to_string(), result)
            .await
    }

    /// The request and its state, when the actor may edit it and it is
    /// pending approval or approved (or held from either).
    async fn editable(
        &self,
        tx: &mut Tx<'_>,
        id: CampaignId,
    ) -> Result<(CampaignRow, CampaignState), OpsError> {
        let row = self.load_authorized(tx, id, Action::EditRequest).await?;
        let state = state_of(&row)?;
        let before_hold = match state {
            CampaignState::Held => state_before_last(tx, id.0, CampaignState::Held).await?,
            other => Some(other),
        };
        if !matches!(
            before_hold,
            Some(CampaignState::PendingApproval | CampaignState::Approved)
        ) {
            return Err(OpsError::Invalid(format!(
                "{id} is `{}`: its spec is frozen once it runs or ends; clone it to change it",
                row.state
            )));
        }
        Ok((row, state))
    }

    async fn edit_inner(&self, id: CampaignId, request: &ValidRequest) -> Result<(), OpsError> {
        let mut tx = self.store.begin().await?;
        let (row, state) = self.editable(&mut tx, id).await?;
        let spec = &request.spec;
        if spec.experiment != row.experiment || spec.kind.as_str() != row.kind {
            return Err(OpsError::Invalid(format!(
                "experiment and kind of {id} are {}/{}: they cannot change; file a new request instead",
                row.experiment, row.kind
            )));
        }
        if request.priority_given && request.meta.priority != row.priority {
            return Err(OpsError::Invalid(format!(
                "priority: `request edit` keeps {id}'s priority {}: write {} back, or change it with `prodops priority {id} {}`",
                row.priority, row.priority, request.meta.priority
            )));
        }
        let hash = spec.hash();
        camp::update_words(
            &mut tx,
            id.0,
            &request.meta.title,
            request.meta.physics_group.as_deref(),
            request.meta.description.as_deref(),
        )
        .await?;
        let who = self.actor.display();
        let detail = if hash == row.spec_hash {
            "description edited; spec unchanged".to_string()
        } else {
            camp::update_spec(&mut tx, id.0, &spec.canonical_json(), &hash).await?;
            store_copies(&mut tx, &request.scripts).await?;
            if row.approved_hash.is_some() {
                camp::set_approval(&mut tx, id.0, None).await?;
                copies::set_start_after(&mut tx, id.0, None).await?;
                cancel_children(&mut tx, id.0, "spec changed after approval", &who).await?;
            }
            if state == CampaignState::Approved {
                set_state(
                    &mut tx,
                    id.0,
                    CampaignState::PendingApproval,
                    "spec changed after approval; approval withdrawn",
                    &who,
                )
                .await?;
            }
            format!("spec {} → {hash}", row.spec_hash)
        };
        self.audit_ok(&mut tx, Action::EditRequest, &id.to_string(), &detail)
            .await?;
        crate::store::commit(tx).await?;
        Ok(())
    }

    /// Reads each job script of `spec` again at approval and locks its
    /// content: it must still be the file filed (same resolved path, inside
    /// the configured roots) with the hash the spec names; a spec filed
    /// before content was locked takes the hash read now. Returns the
    /// contents by hash, to be stored as the copies jobs run (issue 15).
    pub(super) fn lock_scripts(
        &self,
        id: CampaignId,
        spec: &mut Spec,
    ) -> Result<BTreeMap<String, Vec<u8>>, OpsError> {
        let configured = self.policies.of(&spec.experiment).map(|p| ScriptRoots {
            roots: p.script_roots.clone(),
            configured: true,
        });
        let experiment = spec.experiment.clone();
        let mut scripts = BTreeMap::new();
        for (i, stage) in spec.stages.iter_mut().enumerate() {
            let Executable::Script { path, sha256, .. } = &mut stage.executable else {
                continue;
            };
            let field = format!("stage[{i}].script");
            let refused = |message: String| OpsError::Invalid(format!("{id}: {field}: {message}"));
            let resolved = existing_file(&field, path, Path::new("/")).map_err(|e| {
                refused(format!(
                    "{}; the requester re-files it with `prodops request edit {id} FILE`",
                    e.message
                ))
            })?;
            if resolved != *path {
                return Err(refused(format!(
                    "`{path}` now resolves to {resolved} (a link changed since it was filed): the requester re-files it with `prodops request edit {id} FILE`"
                )));
            }
            if let Some(roots) = &configured {
                confine(&field, path, &resolved, roots, &experiment)
                    .map_err(|e| refused(e.message))?;
            }
            let content = read_script(&field, Path::new(path)).map_err(|e| refused(e.message))?;
            let now = hex::encode(Sha256::digest(&content));
            if let Some(filed) = sha256.as_deref().filter(|filed| *filed != now) {
                return Err(refused(format!(
                    "`{path}` changed since it was filed (sha256 {filed} then, {now} now): it is not approved; the requester re-files it with `prodops request edit {id} FILE`, then it is approved again"
                )));
            }
            *sha256 = Some(now.clone());
            scripts.insert(now, content);
        }
        Ok(scripts)
    }

    /// When a campaign of `experiment` approved now may first be split:
    /// `None` without a grace period.
    pub(super) fn start_after(&self, experiment: &str) -> Option<i64> {
        let grace = self.policies.grace_for(experiment);
        (!grace.is_zero()).then(|| crate::clock::now_ms() + grace.as_millis() as i64)
    }

    /// `; first jobs in 300 s (grace period)`, or nothing without one.
    pub(super) fn grace_note(&self, experiment: &str) -> String {
        let grace = self.policies.grace_for(experiment);
        if grace.is_zero() {
            String::new()
        } else {
            format!(
                "; first jobs in {} s (grace period: cancelling before then leaves no job)",
                grace.as_secs()
            )
        }
    }

    /// One request with its spec.
    pub async fn request(&self, id: CampaignId) -> Result<RequestDetail, OpsError> {
        self.reload(id.0).await
    }

    /// Requests matching a filter, in queue order (W3, W5).
    pub async fn requests(&self, filter: &CampaignFilter) -> Result<Vec<RequestSummary>, OpsError> {
        let mut conn = self.store.conn().await?;
        let rows = camp::list_campaigns(&mut conn, filter).await?;
        Ok(rows.iter().map(RequestSummary::from).collect())
    }

    /// Requests matching a filter with their progress (M1), in queue order.
    pub async fn request_lines(
        &self,
        filter: &CampaignFilter,
    ) -> Result<Vec<RequestLine>, OpsError> {
        let mut conn = self.store.conn().await?;
        let rows = camp::list_campaigns(&mut conn, filter).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut progress = overview::progress_of_campaigns(&mut conn, Some(&ids)).await?;
        rows.iter()
            .map(|row| {
                Ok(RequestLine {
                    summary: RequestSummary::from(row),
                    progress: match progress.remove(&row.id) {
                        Some(p) => p,
                        None => campaign_progress(kind_of(row)?, &[]),
                    },
                })
            })
            .collect()
    }

    /// A campaign with its tasks, subtasks and progress (M1, M2).
    pub async fn campaign(&self, id: CampaignId) -> Result<CampaignDetail, OpsError> {
        let mut conn = self.store.conn().await?;
        let row = camp::get_campaign(&mut conn, id.0).await?;
        let tasks = camp::tasks_of(&mut conn, id.0).await?;
        let subtasks = camp::subtasks_of_campaign(&mut conn, id.0).await?;
        let counts = crate::store::jobs::job_counts_of_campaign(&mut conn, id.0).await?;
        let progress = progress_of(&mut conn, &row).await?;
        let spec = spec_of(&row)?;
        let checks = crate::store::checks::all_checks(&mut conn).await?;
        let held_by = checks
            .iter()
            .filter(|c| {
                spec.stages
                    .iter()
                    .any(|stage| c.holds(&row.experiment, &stage.backend))
            })
            .map(|c| c.hold_reason())
            .collect();
        let request = RequestSummary::from(&row);
        let active = ["approved", "running"].contains(&request.state.as_str());
        Ok(CampaignDetail {
            request,
            progress,
            tasks: task_views(&tasks, &subtasks, &counts),
            held_by: if active { held_by } else { Vec::new() },
        })
    }

    /// Every recorded transition of an entity (M5, M8).
    pub async fn history(&self, entity: EntityRef) -> Result<Vec<HistoryView>, OpsError> {
        let rows = states::history_of(self.store.pool(), entity).await?;
        if rows.is_empty() {
            return Err(OpsError::Store(StoreError::NotFound(entity.to_string())));
        }
        Ok(rows.into_iter().map(HistoryView::from).collect())
    }
}

/// The progress of one campaign, computed as for every line of the console (M1).
async fn progress_of(
    conn: &mut crate::store::Conn,
    row: &CampaignRow,
) -> Result<Progress, OpsError> {
    let mut all = overview::progress_of_campaigns(conn, Some(&[row.id])).await?;
    match all.remove(&row.id) {
        Some(p) => Ok(p),
        None => Ok(campaign_progress(kind_of(row)?, &[])),
    }
}

/// Stores the scripts read for a request as the copies its jobs run.
pub(super) async fn store_copies(
    tx: &mut Tx<'_>,
    scripts: &BTreeMap<String, Vec<u8>>,
) -> Result<(), OpsError> {
    for (sha256, content) in scripts {
        copies::store_copy(tx, sha256, content).await?;
    }
    Ok(())
}
