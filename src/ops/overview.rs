//! What the console reads: the campaign tree, pages of jobs, failure groups
//! and who the user is. Reads need no role (every registered user may look).

use super::jobs::JobView;
use super::{Ops, OpsError};
use crate::model::ids::{CampaignId, JobId};
use crate::model::role::Grant;
use crate::store::overview::{self, BatchLine, CampaignLine, FailureGroup, JobQuery};

impl Ops {
    /// Every campaign as a line of the tree.
    pub async fn campaign_lines(&self) -> Result<Vec<CampaignLine>, OpsError> {
        let mut conn = self.store.conn().await?;
        Ok(overview::campaign_lines(&mut conn).await?)
    }

    /// The pre-launch checks' latest verdicts, as the worker recorded them.
    pub async fn check_verdicts(&self) -> Result<Vec<crate::store::checks::CheckRow>, OpsError> {
        let mut conn = self.store.conn().await?;
        Ok(crate::store::checks::all_checks(&mut conn).await?)
    }

    /// The batches of a campaign.
    pub async fn batches(&self, campaign: CampaignId) -> Result<Vec<BatchLine>, OpsError> {
        let mut conn = self.store.conn().await?;
        Ok(overview::batches_of_campaign(&mut conn, campaign.0).await?)
    }

    /// One page of jobs and how many match.
    pub async fn jobs_page(&self, query: &JobQuery) -> Result<(Vec<JobView>, i64), OpsError> {
        let mut conn = self.store.conn().await?;
        let (rows, total) = overview::jobs_page(&mut conn, query).await?;
        Ok((rows.iter().map(JobView::from).collect(), total))
    }

    /// The ids of every job `query` selects: what a bulk action on the jobs
    /// matching a filter acts on.
    pub async fn job_ids(&self, query: &JobQuery) -> Result<Vec<JobId>, OpsError> {
        let mut conn = self.store.conn().await?;
        let ids = overview::job_ids_matching(&mut conn, query).await?;
        Ok(ids.into_iter().map(JobId).collect())
    }

    /// Current failures grouped by cause and site.
    pub async fn failure_groups(
        &self,
        campaign: Option<CampaignId>,
    ) -> Result<Vec<FailureGroup>, OpsError> {
        let mut conn = self.store.conn().await?;
        Ok(overview::failure_groups(&mut conn, campaign.map(|c| c.0)).await?)
    }

    /// The roles of the acting user (empty when not registered).
    pub async fn my_grants(&self) -> Result<Vec<Grant>, OpsError> {
        Ok(self
            .users()
            .await?
            .into_iter()
            .find(|u| u.name == self.actor.name)
            .map(|u| u.grants)
            .unwrap_or_default())
    }
}
