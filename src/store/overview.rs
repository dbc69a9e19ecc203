//! Read models of the console: the campaign tree, a page of jobs sorted and
//! filtered in the database (so a million jobs cost one page), and failures
//! grouped by cause and site for triage.

use super::campaigns::placeholders;
use super::jobs::{job_from_row, JobRow, JOB_COLUMNS};
use super::sql::{json, Dialect};
use super::StoreError;
use crate::model::progress::{campaign_progress, JobUnits, Progress, StageUnits};
use crate::model::spec::TaskKind;
use crate::model::state::{JobState, Lifecycle};
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, HashMap};

/// A campaign as a line of the tree, with how many of its subtasks ended how
/// and its progress (M1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignLine {
    /// Campaign id.
    pub id: i64,
    /// Experiment.
    pub experiment: String,
    /// Kind (mc, reco, …).
    pub kind: String,
    /// Title.
    pub title: String,
    /// State.
    pub state: String,
    /// Priority.
    pub priority: i64,
    /// Subtasks.
    pub subtasks: i64,
    /// Subtasks succeeded.
    pub succeeded: i64,
    /// Subtasks failed.
    pub failed: i64,
    /// Units done of units planned, the same as `campaign show` prints (M1).
    pub progress: Progress,
    /// When an approved campaign may first be split (its grace period's end), ms.
    pub start_after: Option<i64>,
}

/// Every campaign by experiment, then queue order (J16), with subtask counts.
pub async fn campaign_lines(conn: &mut AnyConnection) -> Result<Vec<CampaignLine>, StoreError> {
    let rows = sqlx::query(
        "SELECT c.id, e.name, c.kind, c.title, c.state, c.priority,
                COUNT(s.id),
                COALESCE(SUM(CASE WHEN s.state = 'succeeded' THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN s.state = 'failed' THEN 1 ELSE 0 END), 0),
                c.start_after
         FROM campaigns c JOIN experiments e ON e.id = c.experiment_id
         LEFT JOIN tasks t ON t.campaign_id = c.id LEFT JOIN subtasks s ON s.task_id = t.id
         GROUP BY c.id, e.name, c.kind, c.title, c.state, c.priority, c.created_at, c.start_after
         ORDER BY e.name, c.priority DESC, c.created_at, c.id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut progress = progress_of_campaigns(conn, None).await?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get(0)?;
            let kind: String = r.try_get(2)?;
            Ok(CampaignLine {
                progress: match progress.remove(&id) {
                    Some(p) => p,
                    None => campaign_progress(parse_kind(id, &kind)?, &[]),
                },
                id,
                experiment: r.try_get(1)?,
                kind,
                title: r.try_get(3)?,
                state: r.try_get(4)?,
                priority: r.try_get(5)?,
                subtasks: r.try_get(6)?,
                succeeded: r.try_get(7)?,
                failed: r.try_get(8)?,
                start_after: r.try_get(9)?,
            })
        })
        .collect()
}

fn parse_kind(campaign: i64, kind: &str) -> Result<TaskKind, StoreError> {
    TaskKind::parse(kind)
        .ok_or_else(|| StoreError::Corrupt(format!("kind of C{campaign}"), kind.to_string()))
}

/// The progress (M1) of every campaign, or of those named, by campaign id.
///
/// Two statements whatever the number of campaigns: the units of each
/// subtask's jobs by state, read from the `(subtask_id, state, units)` index
/// (attempts that were retried subtracted), and the subtasks' dependencies.
pub async fn progress_of_campaigns(
    conn: &mut AnyConnection,
    campaigns: Option<&[i64]>,
) -> Result<HashMap<i64, Progress>, StoreError> {
    let sql = progress_sql(Dialect::of(conn), campaigns.is_some());
    let mut query = sqlx::query(&sql);
    if let Some(ids) = campaigns {
        query = query.bind(json(&ids));
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let parents = subtask_parents(conn, campaigns).await?;
    Ok(stages_by_campaign(&rows)?
        .into_iter()
        .map(|(id, (kind, stages))| {
            let stages = link_parents(stages, &parents);
            (id, campaign_progress(kind, &stages))
        })
        .collect())
}

/// One row per campaign, subtask and job state: the current jobs' count and units.
fn progress_sql(dialect: Dialect, named: bool) -> String {
    let ids = dialect.ids(1);
    let campaign_filter = if named {
        format!("c.id IN ({ids})")
    } else {
        "1 = 1".to_string()
    };
    let subtask_filter = |alias: &str| {
        if named {
            format!(
                " AND {alias}.subtask_id IN (SELECT s2.id FROM subtasks s2 JOIN tasks t2 ON t2.id = s2.task_id
                  WHERE t2.campaign_id IN ({ids}))"
            )
        } else {
            String::new()
        }
    };
    format!(
        "SELECT c.id, c.kind, s.id, s.gen_events, a.state, a.n, a.u
         FROM campaigns c
         LEFT JOIN tasks t ON t.campaign_id = c.id
         LEFT JOIN subtasks s ON s.task_id = t.id
         LEFT JOIN (
           SELECT x.subtask_id, x.state, CAST(SUM(x.n) AS BIGINT) AS n, CAST(SUM(x.u) AS BIGINT) AS u
           FROM (
             SELECT j.subtask_id, j.state, COUNT(*) AS n, SUM(j.units) AS u FROM jobs j
             WHERE 1 = 1{}
             GROUP BY j.subtask_id, j.state
             UNION ALL
             SELECT o.subtask_id, o.state, -COUNT(*), -SUM(o.units) FROM jobs o
             WHERE o.id IN (SELECT r.retry_of FROM jobs r WHERE r.retry_of IS NOT NULL){}
             GROUP BY o.subtask_id, o.state
           ) x GROUP BY x.subtask_id, x.state
         ) a ON a.subtask_id = s.id
         WHERE {campaign_filter}
         ORDER BY c.id, s.id",
        subtask_filter("j"),
        subtask_filter("o"),
    )
}

/// A campaign's kind and its subtasks' figures, in subtask id order (parents first).
type CampaignStages = (TaskKind, Vec<(i64, StageUnits)>);

/// Folds the rows of [`progress_sql`] into each campaign's stages.
fn stages_by_campaign(
    rows: &[sqlx::any::AnyRow],
) -> Result<BTreeMap<i64, CampaignStages>, StoreError> {
    let mut by_campaign: BTreeMap<i64, CampaignStages> = BTreeMap::new();
    for r in rows {
        let id: i64 = r.try_get(0)?;
        let kind: String = r.try_get(1)?;
        let (_, stages) = by_campaign
            .entry(id)
            .or_insert((parse_kind(id, &kind)?, Vec::new()));
        let Some(subtask) = r.try_get::<Option<i64>, _>(2)? else {
            continue;
        };
        if stages.last().is_none_or(|(last, _)| *last != subtask) {
            let stage = StageUnits {
                generates: r.try_get(3)?,
                ..StageUnits::default()
            };
            stages.push((subtask, stage));
        }
        if let (Some(state), Some((_, stage))) =
            (r.try_get::<Option<String>, _>(4)?, stages.last_mut())
        {
            add_jobs(stage, &state, r.try_get(5)?, r.try_get(6)?);
        }
    }
    Ok(by_campaign)
}

/// Gives each stage the positions of its parents among the campaign's stages.
fn link_parents(
    stages: Vec<(i64, StageUnits)>,
    parents: &HashMap<i64, Vec<i64>>,
) -> Vec<StageUnits> {
    let position: HashMap<i64, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, (subtask, _))| (*subtask, i))
        .collect();
    stages
        .into_iter()
        .map(|(subtask, mut stage)| {
            stage.parents = parents
                .get(&subtask)
                .into_iter()
                .flatten()
                .filter_map(|p| position.get(p).copied())
                .collect();
            stage
        })
        .collect()
}

/// Adds `n` current jobs in `state` carrying `units` to a stage's figures.
fn add_jobs(stage: &mut StageUnits, state: &str, n: i64, units: i64) {
    if n <= 0 {
        return;
    }
    let jobs = stage.jobs.get_or_insert_with(JobUnits::default);
    jobs.planned += units;
    match JobState::parse(state) {
        Some(JobState::Succeeded) => jobs.done += units,
        Some(JobState::Failed | JobState::Removed) => jobs.failed += units,
        _ => {}
    }
}

/// The parents of the subtasks of the named campaigns (all when `None`).
async fn subtask_parents(
    conn: &mut AnyConnection,
    campaigns: Option<&[i64]>,
) -> Result<HashMap<i64, Vec<i64>>, StoreError> {
    let mut parents: HashMap<i64, Vec<i64>> = HashMap::new();
    let rows = match campaigns {
        Some(ids) => {
            let sql = format!(
                "SELECT d.subtask_id, d.parent_id FROM subtask_deps d
                 JOIN subtasks s ON s.id = d.subtask_id JOIN tasks t ON t.id = s.task_id
                 WHERE t.campaign_id IN ({})",
                Dialect::of(conn).ids(1)
            );
            sqlx::query(&sql).bind(json(&ids)).fetch_all(conn).await?
        }
        None => {
            sqlx::query("SELECT subtask_id, parent_id FROM subtask_deps")
                .fetch_all(conn)
                .await?
        }
    };
    for r in rows {
        parents
            .entry(r.try_get(0)?)
            .or_default()
            .push(r.try_get(1)?);
    }
    Ok(parents)
}

/// A batch as a line of the tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchLine {
    /// Batch id.
    pub id: i64,
    /// Its subtask.
    pub subtask_id: i64,
    /// Its number within the subtask.
    pub seq: i64,
    /// State.
    pub state: String,
    /// Jobs (all attempts).
    pub jobs: i64,
}

/// The batches of a campaign with their job counts.
pub async fn batches_of_campaign(
    conn: &mut AnyConnection,
    campaign: i64,
) -> Result<Vec<BatchLine>, StoreError> {
    let rows = sqlx::query(
        "SELECT b.id, b.subtask_id, b.seq, b.state, (SELECT COUNT(*) FROM jobs j WHERE j.batch_id = b.id)
         FROM batches b JOIN subtasks s ON s.id = b.subtask_id JOIN tasks t ON t.id = s.task_id
         WHERE t.campaign_id = $1 ORDER BY b.id",
    )
    .bind(campaign)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(BatchLine {
                id: r.try_get(0)?,
                subtask_id: r.try_get(1)?,
                seq: r.try_get(2)?,
                state: r.try_get(3)?,
                jobs: r.try_get(4)?,
            })
        })
        .collect()
}

/// The column a job page is sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum JobSort {
    /// Job id (creation order).
    #[default]
    Id,
    /// State, then id.
    State,
    /// Site, then id.
    Site,
    /// Time in the current state (longest first when descending).
    Since,
    /// CPU time.
    Cpu,
    /// Wall time.
    Wall,
    /// Peak memory.
    Rss,
    /// Attempt.
    Attempt,
}

impl JobSort {
    /// Every sort, in the order `sort_next` cycles through them.
    pub const ALL: &'static [JobSort] = &[
        JobSort::Id,
        JobSort::State,
        JobSort::Site,
        JobSort::Since,
        JobSort::Cpu,
        JobSort::Wall,
        JobSort::Rss,
        JobSort::Attempt,
    ];

    /// The column's heading.
    pub fn label(self) -> &'static str {
        match self {
            JobSort::Id => "job",
            JobSort::State => "state",
            JobSort::Site => "site",
            JobSort::Since => "in state",
            JobSort::Cpu => "cpu",
            JobSort::Wall => "wall",
            JobSort::Rss => "rss",
            JobSort::Attempt => "att",
        }
    }

    /// True for columns shown the other way round from how they are stored:
    /// "in state" grows as `state_since` shrinks.
    fn reversed(self) -> bool {
        self == JobSort::Since
    }

    fn column(self) -> &'static str {
        match self {
            JobSort::Id => "j.id",
            JobSort::State => "j.state",
            JobSort::Site => "j.site",
            JobSort::Since => "j.state_since",
            JobSort::Cpu => "j.cpu_ms",
            JobSort::Wall => "j.wall_ms",
            JobSort::Rss => "j.max_rss_kb",
            JobSort::Attempt => "j.attempt",
        }
    }
}

/// Which jobs a page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// Only this campaign's (all when `None`).
    pub campaign: Option<i64>,
    /// Only this subtask's (all of the campaign's when `None`).
    pub subtask: Option<i64>,
    /// Only these states (all when empty).
    pub states: Vec<String>,
    /// Text one of the shown columns must contain: id, step, state, stage,
    /// site, node, batch job id or failure.
    pub text: String,
    /// Sort column.
    pub sort: JobSort,
    /// Sort descending.
    pub descending: bool,
    /// Rows per page.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
}

/// The `FROM … WHERE …` of the jobs a query selects, with its parameters.
fn job_selection(query: &JobQuery) -> (String, Vec<Bind>) {
    let mut filters = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    let from = match query.campaign {
        Some(c) => {
            binds.push(Bind::Int(c));
            filters.push(format!("t.campaign_id = ${}", binds.len()));
            "jobs j JOIN subtasks s ON s.id = j.subtask_id JOIN tasks t ON t.id = s.task_id"
        }
        None => "jobs j",
    };
    if let Some(subtask) = query.subtask {
        binds.push(Bind::Int(subtask));
        filters.push(format!("j.subtask_id = ${}", binds.len()));
    }
    if !query.states.is_empty() {
        filters.push(format!(
            "j.state IN ({})",
            placeholders(binds.len() + 1, query.states.len())
        ));
        binds.extend(query.states.iter().cloned().map(Bind::Text));
    }
    let text = query.text.trim().to_lowercase();
    if !text.is_empty() {
        binds.push(Bind::Text(format!("%{text}%")));
        let n = binds.len();
        let id = text.trim_start_matches('j').parse::<i64>().unwrap_or(-1);
        binds.push(Bind::Int(id));
        filters.push(format!(
            "(j.id = ${} OR j.state LIKE ${n} OR LOWER(COALESCE(j.current_stage, '')) LIKE ${n}
              OR LOWER(COALESCE(j.batch_job_id, '')) LIKE ${n} OR LOWER(COALESCE(j.site, '')) LIKE ${n}
              OR LOWER(COALESCE(j.node, '')) LIKE ${n} OR LOWER(COALESCE(j.failure, '')) LIKE ${n}
              OR EXISTS (SELECT 1 FROM subtasks fs WHERE fs.id = j.subtask_id AND LOWER(fs.name) LIKE ${n}))",
            n + 1
        ));
    }
    let where_ = if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    };
    (format!("{from}{where_}"), binds)
}

/// One page of jobs and how many match in all.
pub async fn jobs_page(
    conn: &mut AnyConnection,
    query: &JobQuery,
) -> Result<(Vec<JobRow>, i64), StoreError> {
    let (selection, binds) = job_selection(query);
    let count_sql = format!("SELECT COUNT(*) FROM {selection}");
    let total: i64 = bind_all(sqlx::query(&count_sql), &binds)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    let ascending = query.descending == query.sort.reversed();
    let dir = if ascending { "ASC" } else { "DESC" };
    let n = binds.len();
    let page_sql = format!(
        "SELECT {JOB_COLUMNS} FROM {selection} ORDER BY {} {dir}, j.id {dir} LIMIT ${} OFFSET ${}",
        query.sort.column(),
        n + 1,
        n + 2
    );
    let rows = bind_all(sqlx::query(&page_sql), &binds)
        .bind(query.limit)
        .bind(query.offset)
        .fetch_all(&mut *conn)
        .await?;
    Ok((
        rows.iter().map(job_from_row).collect::<Result<_, _>>()?,
        total,
    ))
}

/// The ids of every job a query selects (its page ignored), oldest first:
/// what a bulk action on "all matching" acts on.
pub async fn job_ids_matching(
    conn: &mut AnyConnection,
    query: &JobQuery,
) -> Result<Vec<i64>, StoreError> {
    let (selection, binds) = job_selection(query);
    let sql = format!("SELECT j.id FROM {selection} ORDER BY j.id");
    let rows = bind_all(sqlx::query(&sql), &binds)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|r| Ok(r.try_get::<i64, _>(0)?)).collect()
}

/// A value bound into a built query.
#[derive(Debug, Clone)]
enum Bind {
    Int(i64),
    Text(String),
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for b in binds {
        q = match b {
            Bind::Int(i) => q.bind(*i),
            Bind::Text(t) => q.bind(t.as_str()),
        };
    }
    q
}

/// Current failed jobs that share a cause and a site (D1, D2).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureGroup {
    /// The recorded failure reason (exit code, signal, memory, or the batch system's words).
    pub cause: String,
    /// Where they ran.
    pub site: Option<String>,
    /// How many jobs.
    pub count: i64,
    /// When the first of them ended (ms).
    pub first_seen: i64,
    /// When the last of them ended (ms).
    pub last_seen: i64,
    /// Their ids (at most [`GROUP_JOBS`]), oldest first.
    pub jobs: Vec<i64>,
}

/// How many job ids a [`FailureGroup`] carries.
pub const GROUP_JOBS: usize = 1000;

/// Failed jobs not yet retried, grouped by cause and site, biggest group first.
pub async fn failure_groups(
    conn: &mut AnyConnection,
    campaign: Option<i64>,
) -> Result<Vec<FailureGroup>, StoreError> {
    let (from, filter) = match campaign {
        Some(_) => (
            "jobs j JOIN subtasks s ON s.id = j.subtask_id JOIN tasks t ON t.id = s.task_id",
            " AND t.campaign_id = $1",
        ),
        None => ("jobs j", ""),
    };
    let sql = format!(
        "SELECT COALESCE(j.failure, 'failed'), j.site, j.id, COALESCE(j.ended_at, j.state_since)
         FROM {from}
         WHERE j.state IN ('failed', 'removed') AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.retry_of = j.id){filter}
         ORDER BY j.id"
    );
    let mut q = sqlx::query(&sql);
    if let Some(c) = campaign {
        q = q.bind(c);
    }
    let mut groups: Vec<FailureGroup> = Vec::new();
    for r in q.fetch_all(conn).await? {
        let cause: String = r.try_get(0)?;
        let site: Option<String> = r.try_get(1)?;
        let id: i64 = r.try_get(2)?;
        let at: i64 = r.try_get(3)?;
        match groups
            .iter_mut()
            .find(|g| g.cause == cause && g.site == site)
        {
            Some(g) => {
                g.count += 1;
                g.first_seen = g.first_seen.min(at);
                g.last_seen = g.last_seen.max(at);
                if g.jobs.len() < GROUP_JOBS {
                    g.jobs.push(id);
                }
            }
            None => groups.push(FailureGroup {
                cause,
                site,
                count: 1,
                first_seen: at,
                last_seen: at,
                jobs: vec![id],
            }),
        }
    }
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.first_seen.cmp(&b.first_seen)));
    Ok(groups)
}
