//! What Fermilab's jobsub_lite prints, read by pure functions (tested on the
//! samples in `tests/fixtures/jobsub/`): the job ids of `jobsub_submit` and
//! the table of `jobsub_q`.

/// Why jobsub's output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobsubParseError {
    /// `jobsub_submit` printed no cluster and schedd.
    #[error("jobsub_submit printed no job id: `{0}`")]
    NoJobId(String),
    /// A line of `jobsub_q` is not a job.
    #[error("jobsub_q line {line}: {message}")]
    Queue {
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// A jobsub job id: `cluster.proc@schedd`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobsubId {
    /// The cluster.
    pub cluster: u64,
    /// The proc.
    pub proc: u64,
    /// The schedd that holds it.
    pub schedd: String,
}

impl std::fmt::Display for JobsubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}@{}", self.cluster, self.proc, self.schedd)
    }
}

impl std::str::FromStr for JobsubId {
    type Err = ();

    /// Reads `(\d+)(?:\.(\d+))?@([\w.]+)`; a missing proc is 0.
    fn from_str(s: &str) -> Result<JobsubId, ()> {
        let (job, schedd) = s.split_once('@').ok_or(())?;
        let valid_schedd = !schedd.is_empty()
            && schedd
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
        if !valid_schedd {
            return Err(());
        }
        let (cluster, proc) = match job.split_once('.') {
            Some((c, p)) => (c.parse().map_err(|_| ())?, p.parse().map_err(|_| ())?),
            None => (job.parse().map_err(|_| ())?, 0),
        };
        Ok(JobsubId {
            cluster,
            proc,
            schedd: schedd.to_string(),
        })
    }
}

/// The ids of the jobs `jobsub_submit` made: `N job(s) submitted to cluster
/// X.` then `Use job id X.0@SCHEDD to retrieve output`; procs 0…N−1.
pub fn parse_submit(out: &str) -> Result<Vec<JobsubId>, JobsubParseError> {
    let none = || JobsubParseError::NoJobId(out.trim().chars().take(200).collect());
    let (cluster, count) = crate::batch::htcondor::parse::parse_submit(out).map_err(|_| none())?;
    let schedd = out
        .lines()
        .find_map(|line| {
            let id = line
                .trim()
                .strip_prefix("Use job id ")?
                .split_whitespace()
                .next()?;
            id.parse::<JobsubId>()
                .ok()
                .filter(|id| id.cluster == cluster)
        })
        .ok_or_else(none)?
        .schedd;
    Ok((0..count)
        .map(|proc| JobsubId {
            cluster,
            proc,
            schedd: schedd.clone(),
        })
        .collect())
}

/// The status we give a suspended job (JobStatus 7), for which `jobsub_q`
/// prints no `ST` letter at all.
pub const SUSPENDED: char = 'S';

/// A row without its `ST` column: PRIO (an integer) and SIZE (a number)
/// right after RUNTIME, which only a suspended job's row has.
fn suspended_row(words: &[&str]) -> bool {
    words[5].parse::<i64>().is_ok() && words[6].parse::<f64>().is_ok()
}

/// One line of `jobsub_q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// Its id.
    pub id: JobsubId,
    /// The owner.
    pub owner: String,
    /// `ST`: `U I R X C H E` (JobStatus 0–6), or [`SUSPENDED`].
    pub status: char,
    /// The command and its first arguments.
    pub command: String,
}

/// Reads `jobsub_q`'s table (`JOBSUBJOBID OWNER SUBMITTED RUNTIME ST PRIO
/// SIZE COMMAND`, SUBMITTED being two words); the header and the totals
/// line are skipped. A line that is none of these is an error naming it.
pub fn parse_queue(text: &str) -> Result<Vec<QueuedJob>, JobsubParseError> {
    let mut jobs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let skip = words.is_empty() || words[0] == "JOBSUBJOBID" || line.contains(" total; ");
        if skip {
            continue;
        }
        let bad = |message: &str| JobsubParseError::Queue {
            line: i + 1,
            message: message.to_string(),
        };
        if words.len() < 7 {
            return Err(bad("too few columns"));
        }
        let id = words[0]
            .parse::<JobsubId>()
            .map_err(|_| bad("not a jobsub job id"))?;
        let (status, command_from) = if suspended_row(&words) {
            (SUSPENDED, 7)
        } else {
            if words.len() < 8 {
                return Err(bad("too few columns"));
            }
            let letter = words[5]
                .chars()
                .next()
                .filter(|c| words[5].len() == 1 && "UIRXCHE".contains(*c))
                .ok_or_else(|| bad("unknown status (U I R X C H E)"))?;
            (letter, 8)
        };
        jobs.push(QueuedJob {
            id,
            owner: words[1].to_string(),
            status,
            command: words[command_from..].join(" "),
        });
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_read_with_or_without_a_proc() {
        let id: JobsubId = "66882383.4@jobsub02.fnal.gov".parse().unwrap();
        assert_eq!(
            (id.cluster, id.proc, id.schedd.as_str()),
            (66882383, 4, "jobsub02.fnal.gov")
        );
        assert_eq!("12@s".parse::<JobsubId>().unwrap().proc, 0);
        assert_eq!(id.to_string(), "66882383.4@jobsub02.fnal.gov");
        for bad in ["", "12", "a.1@s", "1.b@s", "1.2@", "1.2@sch edd"] {
            assert!(bad.parse::<JobsubId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_submission_lists_one_id_per_proc() {
        let out = "Submitting job(s)...\n3 job(s) submitted to cluster 812.\n\nUse job id 812.0@jobsub01.fnal.gov to retrieve output\n";
        let ids = parse_submit(out).unwrap();
        assert_eq!(
            ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "812.0@jobsub01.fnal.gov",
                "812.1@jobsub01.fnal.gov",
                "812.2@jobsub01.fnal.gov"
            ]
        );
        assert!(parse_submit("Error: condor_submit exited with failed status code 1").is_err());
    }

    #[test]
    fn a_suspended_job_whose_row_has_no_status_letter_reads_as_suspended() {
        let text = "66882383.0@jobsub02.fnal.gov user1 03/30 11:38 0+00:02:10 R 0 0.0 run.sh a\n\
                    66882383.1@jobsub02.fnal.gov user1 03/30 11:38 0+00:01:05  0 0.0 run.sh b\n";
        let jobs = parse_queue(text).unwrap();
        let read: Vec<(char, &str)> = jobs
            .iter()
            .map(|j| (j.status, j.command.as_str()))
            .collect();
        assert_eq!(read, [('R', "run.sh a"), (SUSPENDED, "run.sh b")]);
        let short = "66882383.0@jobsub02.fnal.gov user1 03/30 11:38 0+00:02:10 R 0";
        assert_eq!(
            parse_queue(short).unwrap_err().to_string(),
            "jobsub_q line 1: too few columns"
        );
    }
}
