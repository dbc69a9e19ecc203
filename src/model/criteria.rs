//! Completion criteria (T5): given what a subtask's jobs achieved, is it done?
//!
//! Pure: the worker gathers a [`Progress`] (including the outcome of a check
//! script, which is I/O) and [`evaluate`] turns it into a [`Verdict`].

use super::spec::Completion;

/// What a subtask's current jobs (latest attempts) have achieved so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Current jobs.
    pub jobs: i64,
    /// Of which succeeded.
    pub succeeded: i64,
    /// Of which failed or were removed, with no retry left.
    pub failed: i64,
    /// Of which are not yet ended (created, submitting, queued, running, held).
    pub active: i64,
    /// Events produced by succeeded jobs.
    pub events: i64,
    /// Input files assigned to the subtask.
    pub inputs: i64,
    /// Input files read by a succeeded job.
    pub inputs_consumed: i64,
    /// Output files produced.
    pub outputs: i64,
    /// Every output lies under the `outputs_at` location, when one is asked for.
    pub outputs_at_reached: Option<bool>,
    /// The check script's verdict, when one is configured and it has run.
    pub check_passed: Option<bool>,
    /// A person signed the subtask off.
    pub signed_off: bool,
}

/// The outcome of evaluating criteria.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Jobs are still running: nothing to decide yet.
    Running,
    /// Every chosen criterion holds.
    Met,
    /// Jobs ended but a criterion waits for something outside them (sign-off, a check to run).
    Waiting(String),
    /// Jobs ended and a criterion cannot hold without resubmission.
    Failed(String),
}

/// Applies the chosen criteria; with none chosen, all jobs must succeed.
pub fn evaluate(c: &Completion, p: &Progress) -> Verdict {
    if p.active > 0 {
        return Verdict::Running;
    }
    let mut unmet = Vec::new();
    let all_jobs = c.all_jobs_succeeded || c.is_empty();
    if all_jobs && p.succeeded < p.jobs {
        unmet.push(format!(
            "{} of {} jobs failed",
            p.jobs - p.succeeded,
            p.jobs
        ));
    }
    if let Some(n) = c.events_at_least {
        if p.events < n {
            unmet.push(format!("{} of {n} events produced", p.events));
        }
    }
    if c.all_inputs_consumed && p.inputs_consumed < p.inputs {
        unmet.push(format!(
            "{} of {} input files consumed",
            p.inputs_consumed, p.inputs
        ));
    }
    if c.outputs_at_least_inputs && p.outputs < p.inputs {
        unmet.push(format!("{} outputs for {} inputs", p.outputs, p.inputs));
    }
    if c.outputs_at.is_some() && p.outputs_at_reached != Some(true) {
        unmet.push("outputs have not all reached their location".to_string());
    }
    if c.check_script.is_some() && p.check_passed == Some(false) {
        unmet.push("the check script failed".to_string());
    }
    if !unmet.is_empty() {
        return Verdict::Failed(unmet.join("; "));
    }
    if c.check_script.is_some() && p.check_passed.is_none() {
        return Verdict::Waiting("the check script has not run".to_string());
    }
    if c.signoff && !p.signed_off {
        return Verdict::Waiting("waiting for sign-off (`prodops signoff`)".to_string());
    }
    Verdict::Met
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(jobs: i64, succeeded: i64) -> Progress {
        Progress {
            jobs,
            succeeded,
            failed: jobs - succeeded,
            ..Progress::default()
        }
    }

    #[test]
    fn t5_default_criterion_is_all_jobs_succeeded() {
        let none = Completion::default();
        assert_eq!(evaluate(&none, &done(3, 3)), Verdict::Met);
        assert_eq!(
            evaluate(&none, &done(3, 2)),
            Verdict::Failed("1 of 3 jobs failed".into())
        );
        let running = Progress {
            active: 1,
            ..done(3, 2)
        };
        assert_eq!(evaluate(&none, &running), Verdict::Running);
    }

    #[test]
    fn t5_event_count_tolerates_failed_jobs_when_enough_events_exist() {
        let c = Completion {
            events_at_least: Some(100),
            ..Completion::default()
        };
        let p = Progress {
            events: 120,
            ..done(3, 2)
        };
        assert_eq!(evaluate(&c, &p), Verdict::Met);
        let p = Progress {
            events: 80,
            ..done(3, 2)
        };
        assert_eq!(
            evaluate(&c, &p),
            Verdict::Failed("80 of 100 events produced".into())
        );
    }

    #[test]
    fn t5_inputs_outputs_check_and_signoff() {
        let c = Completion {
            all_inputs_consumed: true,
            outputs_at_least_inputs: true,
            signoff: true,
            ..Completion::default()
        };
        let mut p = Progress {
            inputs: 4,
            inputs_consumed: 4,
            outputs: 4,
            ..done(2, 2)
        };
        assert!(matches!(evaluate(&c, &p), Verdict::Waiting(_)));
        p.signed_off = true;
        assert_eq!(evaluate(&c, &p), Verdict::Met);
        p.outputs = 3;
        assert_eq!(
            evaluate(&c, &p),
            Verdict::Failed("3 outputs for 4 inputs".into())
        );
        let check = Completion {
            check_script: Some("/bin/true".into()),
            ..Completion::default()
        };
        let mut p = done(1, 1);
        assert!(matches!(evaluate(&check, &p), Verdict::Waiting(_)));
        p.check_passed = Some(false);
        assert!(matches!(evaluate(&check, &p), Verdict::Failed(_)));
        p.check_passed = Some(true);
        assert_eq!(evaluate(&check, &p), Verdict::Met);
    }
}
