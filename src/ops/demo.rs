//! The demo: a ready-to-look-at campaign on a fresh database, for newcomers.
//!
//! It registers the caller as admin, operator, approver and experimenter of
//! `nova`, writes the shipped example request and scripts to disk, files the
//! request and approves it. Its stages' scripts get `--pace S`, which makes
//! each of their steps a job stage of S seconds, so people can watch them.

use super::views::CampaignDetail;
use super::{Ops, OpsError};
use crate::model::ids::CampaignId;
use crate::model::role::{Grant, Role, ALL_EXPERIMENTS};
use std::path::Path;
use std::time::Duration;

const REQUEST: &str = include_str!("../../examples/mc-request.toml");
const SCRIPTS: [(&str, &str); 3] = [
    ("gen.sh", include_str!("../../examples/scripts/gen.sh")),
    ("sim.sh", include_str!("../../examples/scripts/sim.sh")),
    ("reco.sh", include_str!("../../examples/scripts/reco.sh")),
];

impl Ops {
    /// Sets up the demo experiment and users, files the example MC request
    /// (written into `dir`, its scripts paced by `pace` unless it is zero) and approves it.
    pub async fn demo(&self, dir: &Path, pace: Duration) -> Result<CampaignDetail, OpsError> {
        let me = self.actor.name.clone();
        let grant = |role, experiment: &str| Grant {
            role,
            experiment: experiment.to_string(),
            kind: None,
        };
        self.user_add(&me, &grant(Role::Operator, ALL_EXPERIMENTS), None, None)
            .await?;
        if !self.experiments().await?.iter().any(|e| e.name == "nova") {
            self.experiment_add("nova", &[]).await?;
        }
        for role in [Role::Approver, Role::Experimenter] {
            self.user_add(&me, &grant(role, "nova"), None, None).await?;
        }
        let request = write_example(dir, pace).map_err(|e| {
            OpsError::Invalid(format!(
                "cannot write the demo files to {}: {e}",
                dir.display()
            ))
        })?;
        let filed = self.request_new(&request).await?;
        let id: CampaignId = filed
            .summary
            .id
            .parse()
            .map_err(|e| OpsError::Invalid(format!("{e}")))?;
        self.approve(id, "demo: approved by the demo").await?;
        self.campaign(id).await
    }
}

fn write_example(dir: &Path, pace: Duration) -> std::io::Result<std::path::PathBuf> {
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts)?;
    for (name, text) in SCRIPTS {
        let path = scripts.join(name);
        std::fs::write(&path, text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    let request = dir.join("mc-request.toml");
    std::fs::write(&request, paced(REQUEST, pace))?;
    Ok(request)
}

/// The request with `args = ["--pace", "S"]` after each stage's `script`.
fn paced(request: &str, pace: Duration) -> String {
    if pace.is_zero() {
        return request.to_string();
    }
    let args = format!("args           = [\"--pace\", \"{}\"]", pace.as_secs_f64());
    let mut out = String::with_capacity(request.len() + 200);
    for line in request.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("script ") {
            out.push_str(&args);
            out.push('\n');
        }
    }
    out
}
