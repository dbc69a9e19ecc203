//! Splitting a subtask into jobs (T4): Monte-Carlo by events with deterministic
//! per-job seeds (X2, J6), data processing by files per job.

use super::spec::StageSpec;
use serde::{Deserialize, Serialize};

/// What one job of a subtask is given; stored with the job so it can be reproduced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPlan {
    /// Index of the job within its subtask, from 0.
    pub seq: i64,
    /// Random seed (Monte-Carlo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Events to generate (Monte-Carlo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<i64>,
    /// Index of the first event (Monte-Carlo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_event: Option<i64>,
    /// Input file ids this job reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<i64>,
}

/// Why a subtask cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SplitError(pub String);

/// Plans the jobs of a stage given the ids of its input files.
/// Job k of a generating stage gets seed `seed_base + k`, so a rerun is identical.
pub fn plan_jobs(stage: &StageSpec, inputs: &[i64]) -> Result<Vec<JobPlan>, SplitError> {
    if let Some(generation) = &stage.generation {
        let per_job = generation.events_per_job;
        return Ok((0..generation.job_count())
            .map(|k| {
                let first = k * per_job;
                JobPlan {
                    seq: k,
                    seed: Some(generation.seed_base + k),
                    events: Some(per_job.min(generation.events - first)),
                    first_event: Some(first),
                    inputs: Vec::new(),
                }
            })
            .collect());
    }
    if inputs.is_empty() {
        return Err(SplitError(format!(
            "stage `{}` has no input files: its parents produced none and it names none",
            stage.name
        )));
    }
    let per_job = stage.files_per_job.unwrap_or(inputs.len() as i64).max(1) as usize;
    Ok(inputs
        .chunks(per_job)
        .enumerate()
        .map(|(k, chunk)| JobPlan {
            seq: k as i64,
            seed: None,
            events: None,
            first_event: None,
            inputs: chunk.to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::request::{parse_request, Format};

    fn stages() -> Vec<StageSpec> {
        let text = r#"
experiment = "nova"
kind = "mc"
title = "t"
[defaults]
release = "v1"
[[stage]]
name = "gen"
script = "g.sh"
events = 1050
events_per_job = 100
seed_base = 7
[[stage]]
name = "sim"
after = ["gen"]
script = "s.sh"
files_per_job = 2
[[stage]]
name = "merge"
after = ["sim"]
script = "m.sh"
"#;
        parse_request(text.as_bytes(), Format::Toml)
            .unwrap()
            .spec
            .stages
    }

    #[test]
    fn x2_mc_jobs_get_deterministic_recorded_seeds_and_all_events() {
        let plan = plan_jobs(&stages()[0], &[]).unwrap();
        assert_eq!(plan.len(), 11);
        assert_eq!(plan[0].seed, Some(7));
        assert_eq!(plan[10].seed, Some(17));
        assert_eq!(
            plan[10].events,
            Some(50),
            "the last job makes the remainder"
        );
        assert_eq!(plan.iter().map(|p| p.events.unwrap()).sum::<i64>(), 1050);
        assert_eq!(
            plan,
            plan_jobs(&stages()[0], &[]).unwrap(),
            "splitting is reproducible"
        );
    }

    #[test]
    fn t4_files_are_split_per_job_and_a_stage_without_split_gets_one_job() {
        let plan = plan_jobs(&stages()[1], &[1, 2, 3, 4, 5]).unwrap();
        let inputs: Vec<Vec<i64>> = plan.iter().map(|p| p.inputs.clone()).collect();
        assert_eq!(inputs, vec![vec![1, 2], vec![3, 4], vec![5]]);
        let merge = plan_jobs(&stages()[2], &[1, 2, 3]).unwrap();
        assert_eq!(merge.len(), 1);
        assert!(plan_jobs(&stages()[1], &[]).is_err());
    }
}
