//! Printing results: aligned tables for people, JSON for scripts.

use crate::model::check::{CheckSpec, Verdict};
use crate::model::ids::EntityKind;
use crate::ops::jobs::{JobDetail, JobView, JobsRequested, Resubmitted};
use crate::ops::views::{CampaignDetail, HistoryView, RequestDetail, RequestLine};
use crate::store::campaigns::count;
use crate::store::directory::{Experiment, User};
use crate::store::{Backend, Store};
use serde::Serialize;

/// Prints results in the chosen form.
pub(super) struct Printer {
    pub(super) json: bool,
}

fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows as columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

impl Printer {
    pub(super) fn request(&self, r: &RequestDetail) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        let s = &r.summary;
        println!("{}  {}/{}  {}", s.id, s.experiment, s.kind, s.title);
        println!("  state       {} (since {})", s.state, s.state_since);
        println!("  priority    {}", s.priority);
        println!("  creator     {} at {}", s.creator, s.created_at);
        if let Some(g) = &r.physics_group {
            println!("  group       {g}");
        }
        println!("  spec hash   {}", r.spec_hash);
        if let (Some(by), Some(at)) = (&r.approved_by, &r.approved_at) {
            println!("  approved    by {by} at {at}");
        }
        if let Some(src) = &r.cloned_from {
            println!("  cloned from {src}");
        }
        if let Some(into) = &r.consolidated_into {
            println!("  folded into {into}");
        }
        if let Some(stages) = r.spec.get("stages").and_then(|s| s.as_array()) {
            println!("  stages");
            for st in stages {
                let name = st.get("name").and_then(|v| v.as_str()).unwrap_or("?");
                let after: Vec<&str> = st
                    .get("after")
                    .and_then(|a| a.as_array())
                    .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                let after = if after.is_empty() {
                    String::new()
                } else {
                    format!("  after {}", after.join(", "))
                };
                println!("    {name}{after}");
            }
        }
        Ok(())
    }

    pub(super) fn requests(&self, rows: &[RequestLine]) -> anyhow::Result<()> {
        if self.json {
            return print_json(rows);
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|line| {
                let r = &line.summary;
                vec![
                    r.id.clone(),
                    r.experiment.clone(),
                    r.kind.clone(),
                    r.state.clone(),
                    r.priority.to_string(),
                    line.progress.to_string(),
                    r.creator.clone(),
                    r.title.clone(),
                ]
            })
            .collect();
        table(
            &[
                "ID",
                "EXPERIMENT",
                "KIND",
                "STATE",
                "PRIO",
                "PROGRESS",
                "CREATOR",
                "TITLE",
            ],
            &cells,
        );
        Ok(())
    }

    pub(super) fn campaign(&self, c: &CampaignDetail) -> anyhow::Result<()> {
        if self.json {
            return print_json(c);
        }
        let r = &c.request;
        println!("{}  {}/{}  {}", r.id, r.experiment, r.kind, r.title);
        println!(
            "  state {}  priority {}  progress {}",
            r.state, r.priority, c.progress
        );
        for reason in &c.held_by {
            println!("  submissions held: {reason}");
        }
        for t in &c.tasks {
            println!("  {} {}  {}", t.id, t.name, t.state);
            for s in &t.subtasks {
                let after = if s.after.is_empty() {
                    String::new()
                } else {
                    format!("  after {}", s.after.join(", "))
                };
                println!("    {} {}  {}{after}", s.id, s.name, s.state);
            }
        }
        Ok(())
    }

    pub(super) fn jobs(&self, jobs: &[JobView]) -> anyhow::Result<()> {
        if self.json {
            return print_json(jobs);
        }
        let cells: Vec<Vec<String>> = jobs.iter().map(job_cells).collect();
        table(
            &[
                "JOB", "SUBTASK", "TRY", "STATE", "FOR", "SITE", "BATCH ID", "STAGE", "CPU",
                "WALL", "RSS", "WHY",
            ],
            &cells,
        );
        Ok(())
    }

    pub(super) fn job(&self, j: &JobDetail) -> anyhow::Result<()> {
        if self.json {
            return print_json(j);
        }
        self.jobs(std::slice::from_ref(&j.job))?;
        let v = &j.job;
        let or_dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        println!(
            "backend {} ({}) · site {} · node {} ({}) · batch id {} · attempt {}{}",
            v.backend,
            or_dash(&v.instance),
            or_dash(&v.site),
            or_dash(&v.node),
            or_dash(&v.node_kind),
            or_dash(&v.batch_job_id),
            v.attempt,
            v.retry_of
                .as_ref()
                .map(|r| format!(" (retries {r})"))
                .unwrap_or_default()
        );
        println!("plan {}", v.plan);
        let cells: Vec<Vec<String>> = j
            .stages
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    crate::ops::views::iso(s.started_at),
                    ms(s.wall_ms),
                    ms(s.cpu_ms),
                    kib(s.max_rss_kb),
                    match s.ok {
                        Some(true) => "ok".into(),
                        Some(false) => "failed".into(),
                        None => "running".into(),
                    },
                ]
            })
            .collect();
        table(
            &["STAGE", "STARTED", "WALL", "CPU", "RSS", "RESULT"],
            &cells,
        );
        Ok(())
    }

    pub(super) fn resubmitted(&self, r: &Resubmitted) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        println!(
            "resubmitted {} jobs as new attempts: {}",
            r.jobs.len(),
            r.jobs.join(" ")
        );
        if !r.replanned.is_empty() {
            println!("split again: {}", r.replanned.join(" "));
        }
        Ok(())
    }

    pub(super) fn jobs_requested(&self, r: &JobsRequested) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        println!(
            "{} {}: the worker carries it out on its next pass",
            r.requested,
            r.jobs.join(" ")
        );
        Ok(())
    }

    pub(super) fn history(&self, rows: &[HistoryView]) -> anyhow::Result<()> {
        if self.json {
            return print_json(rows);
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|h| {
                vec![
                    h.ts.clone(),
                    h.entity.clone(),
                    format!("{} → {}", h.old.as_deref().unwrap_or("—"), h.new),
                    h.user.clone(),
                    h.reason.clone(),
                ]
            })
            .collect();
        table(&["TIME", "ENTITY", "TRANSITION", "USER", "REASON"], &cells);
        Ok(())
    }

    pub(super) fn checks(
        &self,
        verdicts: &[(CheckSpec, Verdict)],
        unreachable: &std::collections::BTreeMap<String, usize>,
    ) -> anyhow::Result<()> {
        let out_of_reach = unreachable.iter().map(|(instance, n)| {
            (
                format!("reach {instance}"),
                format!("{n} job(s) in flight there: this worker cannot reach it, they are left as they are"),
            )
        });
        if self.json {
            let mut rows: Vec<serde_json::Value> = verdicts
                .iter()
                .map(|(spec, v)| {
                    serde_json::json!({
                        "name": spec.name,
                        "guards": spec.scope.describe(),
                        "experiment": spec.scope.experiment,
                        "backend": spec.scope.backend,
                        "passing": v.ok,
                        "detail": v.detail,
                    })
                })
                .collect();
            rows.extend(out_of_reach.map(|(name, detail)| {
                serde_json::json!({
                    "name": name, "guards": "its jobs", "experiment": null,
                    "backend": null, "passing": false, "detail": detail,
                })
            }));
            return print_json(&rows);
        }
        let mut cells: Vec<Vec<String>> = verdicts
            .iter()
            .map(|(spec, v)| {
                vec![
                    spec.name.clone(),
                    if v.ok { "pass" } else { "FAIL" }.to_string(),
                    spec.scope.describe(),
                    v.detail.clone(),
                ]
            })
            .collect();
        cells.extend(
            out_of_reach.map(|(name, detail)| vec![name, "FAIL".into(), "its jobs".into(), detail]),
        );
        table(&["CHECK", "VERDICT", "GUARDS", "DETAIL"], &cells);
        Ok(())
    }

    pub(super) fn users(&self, users: &[User]) -> anyhow::Result<()> {
        if self.json {
            return print_json(users);
        }
        let cells: Vec<Vec<String>> = users
            .iter()
            .map(|u| {
                let roles: Vec<String> = u
                    .grants
                    .iter()
                    .map(|g| {
                        let kind = g.kind.map(|k| format!("/{k}")).unwrap_or_default();
                        format!("{}@{}{kind}", g.role, g.experiment)
                    })
                    .collect();
                vec![
                    u.name.clone(),
                    roles.join(" "),
                    u.dn.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(&["USER", "ROLES", "DN"], &cells);
        Ok(())
    }

    pub(super) fn experiments(&self, exps: &[Experiment]) -> anyhow::Result<()> {
        if self.json {
            return print_json(exps);
        }
        let cells: Vec<Vec<String>> = exps
            .iter()
            .map(|e| {
                let kinds: Vec<&str> = e.auto_approve.iter().map(|k| k.as_str()).collect();
                vec![e.name.clone(), kinds.join(",")]
            })
            .collect();
        table(&["EXPERIMENT", "AUTO-APPROVED KINDS"], &cells);
        Ok(())
    }

    pub(super) async fn db_info(&self, store: &Store) -> anyhow::Result<()> {
        let mut conn = store.conn().await?;
        let mut counts = serde_json::Map::new();
        for kind in EntityKind::ALL {
            counts.insert(
                kind.as_str().to_string(),
                count(&mut conn, kind).await?.into(),
            );
        }
        let migrations: Vec<serde_json::Value> = store
            .applied_migrations()
            .await?
            .into_iter()
            .map(|(v, d)| serde_json::json!({ "version": v, "description": d }))
            .collect();
        let info = serde_json::json!({
            "location": store.location(),
            "backend": match store.backend() { Backend::Sqlite => "sqlite", Backend::Postgres => "postgres" },
            "migrations": migrations,
            "counts": counts,
        });
        if self.json {
            return print_json(&info);
        }
        println!(
            "database   {} ({})",
            info["location"].as_str().unwrap_or(""),
            info["backend"].as_str().unwrap_or("")
        );
        println!("migrations {}", migrations.len());
        for (k, v) in &counts {
            println!("{k:<10} {v}");
        }
        Ok(())
    }
}

fn job_cells(j: &JobView) -> Vec<String> {
    vec![
        j.id.clone(),
        j.subtask.clone(),
        j.attempt.to_string(),
        j.state.clone(),
        duration(j.seconds_in_state),
        j.site.clone().unwrap_or_default(),
        j.batch_job_id.clone().unwrap_or_default(),
        j.stage.clone().unwrap_or_default(),
        ms(j.cpu_ms),
        ms(j.wall_ms),
        kib(j.max_rss_kb),
        j.failure.clone().unwrap_or_default(),
    ]
}

/// `90` → `1m30s`, for time in state.
fn duration(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn ms(v: Option<i64>) -> String {
    v.map(|v| format!("{:.2}s", v as f64 / 1000.0))
        .unwrap_or_default()
}

fn kib(v: Option<i64>) -> String {
    v.map(|v| format!("{:.1}M", v as f64 / 1024.0))
        .unwrap_or_default()
}
