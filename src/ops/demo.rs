//! The demo: a ready-to-look-at campaign on a fresh database, for newcomers.
//!
//! It registers the caller as admin, operator, approver and experimenter of
//! `nova`, writes the shipped example request and scripts to disk, files the
//! request and approves it.

use super::views::CampaignDetail;
use super::{Ops, OpsError};
use crate::model::ids::CampaignId;
use crate::model::role::{Grant, Role, ALL_EXPERIMENTS};
use std::path::Path;

const REQUEST: &str = include_str!("../../examples/mc-request.toml");
const SCRIPTS: [(&str, &str); 3] = [
    ("gen.sh", include_str!("../../examples/scripts/gen.sh")),
    ("sim.sh", include_str!("../../examples/scripts/sim.sh")),
    ("reco.sh", include_str!("../../examples/scripts/reco.sh")),
];

impl Ops {
    /// Sets up the demo experiment and users, files the example MC request
    /// (written into `dir`) and approves it.
    pub async fn demo(&self, dir: &Path) -> Result<CampaignDetail, OpsError> {
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
        let request = write_example(dir).map_err(|e| {
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

fn write_example(dir: &Path) -> std::io::Result<std::path::PathBuf> {
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
    std::fs::write(&request, REQUEST)?;
    Ok(request)
}
