//! Reading and validating a request file (J15, P4).
//!
//! A request file (TOML or JSON) is parsed into raw types that mirror its
//! fields, then validated into a [`Spec`] plus [`RequestMeta`]. Every error
//! names the field (`stage[1].events`) and says how to fix it, on one line.

use super::dag::{Dag, DagError};
use super::spec::*;
use serde::Deserialize;
use std::collections::HashSet;

/// Highest allowed priority.
pub const MAX_PRIORITY: i64 = 1000;
/// Largest number of events one stage may request.
pub const MAX_EVENTS: i64 = 1_000_000_000_000;
/// Largest number of jobs one stage may split into.
pub const MAX_JOBS_PER_STAGE: i64 = 1_000_000;
const MAX_STAGES: usize = 10_000;
const MAX_TEXT: usize = 10_000;
const MAX_TITLE: usize = 200;

/// A request file that cannot be accepted, with the field to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RequestError {
    /// Dotted path of the offending field (`stage[1].events`), or where a syntax error is.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> RequestError {
    RequestError {
        field: field.into(),
        message: message.into(),
    }
}

/// The syntax of a request file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML, the format people write.
    Toml,
    /// JSON, the format scripts write.
    Json,
}

impl Format {
    /// Chooses by file name: `.json` is JSON, everything else TOML.
    pub fn from_path(path: &str) -> Format {
        if path.to_ascii_lowercase().ends_with(".json") {
            Format::Json
        } else {
            Format::Toml
        }
    }

    /// Chooses by file name, then by content: `.json` is JSON, `.toml` TOML,
    /// and other text (stdin) JSON when it starts with `{`, which TOML cannot.
    pub fn of(name: &str, bytes: &[u8]) -> Format {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".json") || lower.ends_with(".toml") {
            return Format::from_path(&lower);
        }
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Format::Json,
            _ => Format::Toml,
        }
    }
}

/// A validated request: its descriptive part and its hashed spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRequest {
    /// Title, priority, group, description.
    pub meta: RequestMeta,
    /// What runs.
    pub spec: Spec,
    /// True when the file states a priority (else the default applies).
    pub priority_given: bool,
    /// The content of each script as read when filed, by its SHA-256 (hex):
    /// stored with the request so jobs run what was approved (issue 15).
    pub scripts: std::collections::BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    experiment: String,
    kind: String,
    title: String,
    priority: Option<i64>,
    physics_group: Option<String>,
    description: Option<String>,
    #[serde(default)]
    defaults: RawDefaults,
    input: Option<InputSpec>,
    keepup: Option<RawKeepup>,
    #[serde(default, rename = "stage")]
    stages: Vec<RawStage>,
}

fn default_priority() -> i64 {
    50
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    release: Option<String>,
    application: Option<String>,
    backend: Option<String>,
    resources: Option<RawResources>,
    sites: Option<RawSites>,
    max_attempts: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    memory_mb: Option<i64>,
    wall_hours: Option<f64>,
    cpus: Option<i64>,
    disk_mb: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSites {
    usage_model: Option<Vec<String>>,
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeepup {
    every: String,
    dataset: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    #[serde(default)]
    after: Vec<String>,
    application: Option<String>,
    release: Option<String>,
    backend: Option<String>,
    script: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    launch: Option<Launch>,
    input: Option<InputSpec>,
    events: Option<i64>,
    events_per_job: Option<i64>,
    seed_base: Option<i64>,
    files_per_job: Option<i64>,
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
    resources: Option<RawResources>,
    sites: Option<RawSites>,
    complete_when: Option<Completion>,
    max_attempts: Option<i64>,
}

/// Parses and validates a request file's bytes.
pub fn parse_request(bytes: &[u8], format: Format) -> Result<ValidRequest, RequestError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        bad(
            "file",
            format!(
                "not valid UTF-8 at byte {}: save the file as UTF-8",
                e.valid_up_to()
            ),
        )
    })?;
    let value = parse_syntax(text, format)?;
    if format == Format::Json && value.get("spec").is_some() {
        return parse_shown(value);
    }
    let raw: RawRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        field_error(&path, &e.into_inner().to_string())
    })?;
    validate(raw)
}

/// A request as `request show --json` prints it: its descriptive fields and
/// its stored spec, checked like the request file they are written back as.
#[derive(Debug, Deserialize)]
struct ShownRequest {
    title: String,
    #[serde(default = "default_priority")]
    priority: i64,
    physics_group: Option<String>,
    description: Option<String>,
    spec: Spec,
}

fn parse_shown(value: serde_json::Value) -> Result<ValidRequest, RequestError> {
    let shown: ShownRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        field_error(&path, &e.into_inner().to_string())
    })?;
    let meta = RequestMeta {
        title: shown.title,
        priority: shown.priority,
        physics_group: shown.physics_group,
        description: shown.description,
    };
    let text = super::request_file::request_toml(&meta, &shown.spec)?;
    parse_request(text.as_bytes(), Format::Toml)
}

fn parse_syntax(text: &str, format: Format) -> Result<serde_json::Value, RequestError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| {
            bad(
                format!("line {}", e.line()),
                format!("invalid JSON: {}", strip_position(&e.to_string())),
            )
        }),
        Format::Toml => {
            let value: toml::Value = toml::from_str(text).map_err(|e| {
                let line = e
                    .span()
                    .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                    .unwrap_or(1);
                bad(
                    format!("line {line}"),
                    format!("invalid TOML: {}", e.message().trim()),
                )
            })?;
            refuse_values_json_cannot_hold(&value, "")?;
            serde_json::to_value(value).map_err(|e| bad("file", e.to_string()))
        }
    }
}

/// TOML has values JSON lacks: NaN and infinity would silently become null and
/// dates would become tables, so they are refused here with their field.
fn refuse_values_json_cannot_hold(value: &toml::Value, path: &str) -> Result<(), RequestError> {
    let field = || {
        if path.is_empty() {
            "file".to_string()
        } else {
            path.to_string()
        }
    };
    match value {
        toml::Value::Float(f) if !f.is_finite() => Err(bad(
            field(),
            format!("`{f}` is not a usable number: write a finite value"),
        )),
        toml::Value::Datetime(d) => Err(bad(
            field(),
            format!("a TOML date/time (`{d}`) is not accepted here: quote it if it is text"),
        )),
        toml::Value::Table(t) => t.iter().try_for_each(|(k, v)| {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            refuse_values_json_cannot_hold(v, &sub)
        }),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| refuse_values_json_cannot_hold(v, &format!("{path}[{i}]"))),
        _ => Ok(()),
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Turns a serde error at `path` into one line that names the field.
fn field_error(path: &str, message: &str) -> RequestError {
    let message = message
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number");
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next());
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next());
    let join = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    match (missing, unknown) {
        (Some(name), _) => bad(join(name), "is required but missing: add it"),
        (_, Some(name)) => {
            let field = if path.ends_with(name) {
                path.to_string()
            } else {
                join(name)
            };
            let expected = message.split("expected ").nth(1).unwrap_or("").to_string();
            bad(
                field,
                format!("unknown field: remove it or fix its spelling (expected {expected})"),
            )
        }
        _ => bad(if path == "." { "file" } else { path }, message),
    }
}

fn validate(raw: RawRequest) -> Result<ValidRequest, RequestError> {
    check_name("experiment", &raw.experiment)?;
    let kind = TaskKind::parse(&raw.kind).ok_or_else(|| {
        let all: Vec<&str> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
        bad(
            "kind",
            format!("unknown kind `{}`: use one of {}", raw.kind, all.join(", ")),
        )
    })?;
    check_text("title", &raw.title, MAX_TITLE, true)?;
    let priority = raw.priority.unwrap_or_else(default_priority);
    check_range("priority", priority, 0, MAX_PRIORITY)?;
    if let Some(g) = &raw.physics_group {
        check_text("physics_group", g, MAX_TITLE, true)?;
    }
    if let Some(d) = &raw.description {
        check_any_text("description", d, MAX_TEXT, false, true)?;
    }
    if let Some(input) = &raw.input {
        check_input("input", input)?;
    }
    let keepup = raw.keepup.as_ref().map(check_keepup).transpose()?;
    if raw.stages.is_empty() {
        return Err(bad("stage", "at least one [[stage]] is required"));
    }
    if raw.stages.len() > MAX_STAGES {
        return Err(bad(
            "stage",
            format!(
                "at most {MAX_STAGES} stages are allowed (got {})",
                raw.stages.len()
            ),
        ));
    }
    let defaults = check_defaults(&raw.defaults)?;
    let stages = raw
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| check_stage(i, s, &defaults, raw.input.is_some()))
        .collect::<Result<Vec<_>, _>>()?;
    let order = check_stage_graph_order(&stages)?;
    let stages = in_dag_order(stages, &order);
    if kind == TaskKind::Mc && !stages.iter().any(|s| s.generation.is_some()) {
        return Err(bad(
            "stage",
            "a Monte-Carlo request needs a stage with `events`, `events_per_job` and `seed_base`",
        ));
    }
    Ok(ValidRequest {
        meta: RequestMeta {
            title: raw.title.trim().to_string(),
            priority,
            physics_group: raw.physics_group,
            description: raw.description,
        },
        spec: Spec {
            experiment: raw.experiment,
            kind,
            input: raw.input,
            keepup,
            stages,
        },
        priority_given: raw.priority.is_some(),
        scripts: Default::default(),
    })
}

struct Defaults {
    release: Option<String>,
    application: Option<String>,
    backend: String,
    resources: Resources,
    sites: Sites,
    max_attempts: i64,
}

fn check_defaults(raw: &RawDefaults) -> Result<Defaults, RequestError> {
    let backend = raw.backend.clone().unwrap_or_else(|| "local".to_string());
    check_backend("defaults.backend", &backend)?;
    let max_attempts = raw.max_attempts.unwrap_or(3);
    check_range("defaults.max_attempts", max_attempts, 1, 20)?;
    if let Some(r) = &raw.release {
        check_text("defaults.release", r, MAX_TITLE, true)?;
    }
    Ok(Defaults {
        release: raw.release.clone(),
        application: raw.application.clone(),
        backend,
        resources: merge_resources(
            "defaults.resources",
            &Resources::default(),
            raw.resources.as_ref(),
        )?,
        sites: merge_sites("defaults.sites", &Sites::default(), raw.sites.as_ref())?,
        max_attempts,
    })
}

fn check_stage(
    i: usize,
    raw: &RawStage,
    defaults: &Defaults,
    request_has_input: bool,
) -> Result<StageSpec, RequestError> {
    let at = |f: &str| format!("stage[{i}].{f}");
    check_name(&at("name"), &raw.name)?;
    let release = raw
        .release
        .clone()
        .or_else(|| defaults.release.clone())
        .ok_or_else(|| bad(at("release"), "is required: set it here or in [defaults]"))?;
    check_text(&at("release"), &release, MAX_TITLE, true)?;
    let backend = raw
        .backend
        .clone()
        .unwrap_or_else(|| defaults.backend.clone());
    check_backend(&at("backend"), &backend)?;
    let executable =
        match (&raw.script, &raw.launch) {
            (Some(path), None) => {
                check_text(&at("script"), path, 4096, true)?;
                Executable::Script {
                    path: path.clone(),
                    args: raw.args.clone(),
                    sha256: None,
                }
            }
            (None, Some(launch)) => {
                check_text(&at("launch.command"), &launch.command, 4096, true)?;
                if let Some(pattern) = &launch.job_id_pattern {
                    if let Err(e) = regex::Regex::new(pattern) {
                        let why = e.to_string();
                        let why = why.lines().last().unwrap_or("").trim();
                        return Err(bad(
                            at("launch.job_id_pattern"),
                            format!("is not a regular expression ({why}); e.g. \"job id (\\S+)\""),
                        ));
                    }
                }
                Executable::Launch(launch.clone())
            }
            (Some(_), Some(_)) => {
                return Err(bad(
                    at("script"),
                    "give either `script` or `launch`, not both",
                ))
            }
            (None, None) => return Err(bad(
                at("script"),
                "is required: give the script to run, or `launch` for an experiment launch script",
            )),
        };
    if let Some(input) = &raw.input {
        check_input(&at("input"), input)?;
    }
    let generation = check_generation(i, raw)?;
    if let Some(n) = raw.files_per_job {
        check_range(&at("files_per_job"), n, 1, 100_000)?;
    }
    if generation.is_some() && raw.files_per_job.is_some() {
        return Err(bad(
            at("files_per_job"),
            "a stage splits by events or by files, not both: remove one",
        ));
    }
    let has_input = raw.input.is_some() || request_has_input;
    if raw.after.is_empty() && generation.is_none() && !has_input {
        return Err(bad(
            at("input"),
            "a first stage needs `events` (Monte-Carlo) or an input dataset: add `input` or `events`",
        ));
    }
    let max_attempts = raw.max_attempts.unwrap_or(defaults.max_attempts);
    check_range(&at("max_attempts"), max_attempts, 1, 20)?;
    for (key, value) in &raw.params {
        check_param(&at(&format!("params.{key}")), value)?;
    }
    let complete_when = raw.complete_when.clone().unwrap_or_default();
    check_completion(&at("complete_when"), &complete_when)?;
    Ok(StageSpec {
        name: raw.name.clone(),
        after: raw.after.clone(),
        application: raw
            .application
            .clone()
            .or_else(|| defaults.application.clone()),
        release,
        backend,
        executable,
        input: raw.input.clone(),
        generation,
        files_per_job: raw.files_per_job,
        params: raw.params.clone(),
        resources: merge_resources(
            &at("resources"),
            &defaults.resources,
            raw.resources.as_ref(),
        )?,
        sites: merge_sites(&at("sites"), &defaults.sites, raw.sites.as_ref())?,
        complete_when,
        max_attempts,
    })
}

fn check_generation(i: usize, raw: &RawStage) -> Result<Option<Generation>, RequestError> {
    let at = |f: &str| format!("stage[{i}].{f}");
    let Some(events) = raw.events else {
        for (name, v) in [
            ("events_per_job", raw.events_per_job),
            ("seed_base", raw.seed_base),
        ] {
            if v.is_some() {
                return Err(bad(
                    at(name),
                    "only makes sense with `events`: add `events` or remove it",
                ));
            }
        }
        return Ok(None);
    };
    check_range(&at("events"), events, 1, MAX_EVENTS)?;
    let per_job = raw.events_per_job.ok_or_else(|| {
        bad(
            at("events_per_job"),
            "is required with `events`: say how many events one job makes",
        )
    })?;
    check_range(&at("events_per_job"), per_job, 1, events)?;
    let seed_base = raw.seed_base.ok_or_else(|| {
        bad(
            at("seed_base"),
            "is required with `events`, so every job's seed can be reproduced",
        )
    })?;
    check_range(&at("seed_base"), seed_base, 0, i64::MAX / 2)?;
    let generation = Generation {
        events,
        events_per_job: per_job,
        seed_base,
    };
    if generation.job_count() > MAX_JOBS_PER_STAGE {
        return Err(bad(
            at("events_per_job"),
            format!(
                "{events} events at {per_job} per job make {} jobs, more than {MAX_JOBS_PER_STAGE}: raise events_per_job",
                generation.job_count()
            ),
        ));
    }
    Ok(Some(generation))
}

/// The stages in DAG order (parents first, file order among equals), so a
/// request and its file written back list them alike (the hash covers the order).
fn in_dag_order(stages: Vec<StageSpec>, order: &[String]) -> Vec<StageSpec> {
    let mut by_name: std::collections::HashMap<String, StageSpec> =
        stages.into_iter().map(|s| (s.name.clone(), s)).collect();
    order
        .iter()
        .filter_map(|name| by_name.remove(name))
        .collect()
}

/// Checks the stage names and dependencies; returns the names in DAG order.
fn check_stage_graph_order(stages: &[StageSpec]) -> Result<Vec<String>, RequestError> {
    let mut seen = HashSet::new();
    for (i, s) in stages.iter().enumerate() {
        if !seen.insert(s.name.as_str()) {
            return Err(bad(
                format!("stage[{i}].name"),
                format!(
                    "`{}` is used by an earlier stage: stage names must be unique",
                    s.name
                ),
            ));
        }
    }
    for (i, s) in stages.iter().enumerate() {
        for (j, parent) in s.after.iter().enumerate() {
            if s.after[..j].contains(parent) {
                return Err(bad(
                    format!("stage[{i}].after[{j}]"),
                    format!("`{parent}` is listed twice: remove one"),
                ));
            }
            if !seen.contains(parent.as_str()) {
                let known: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
                return Err(bad(
                    format!("stage[{i}].after[{j}]"),
                    format!(
                        "unknown stage `{parent}` (stages are: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    let names: Vec<String> = stages.iter().map(|s| s.name.clone()).collect();
    let edges: Vec<(String, String)> = stages
        .iter()
        .flat_map(|s| s.after.iter().map(|p| (p.clone(), s.name.clone())))
        .collect();
    match Dag::new(names, &edges) {
        Ok(dag) => Ok(dag.topological_order().into_iter().cloned().collect()),
        Err(e @ DagError::Cycle(_)) => Err(bad(
            "stage.after",
            format!("{e}: remove one of these dependencies"),
        )),
        Err(e) => Err(bad("stage.after", e.to_string())),
    }
}

/// Free-form parameters hold what a TOML request file can: no null, no
/// integer beyond 64 bits (JSON files could give either).
fn check_param(field: &str, value: &serde_json::Value) -> Result<(), RequestError> {
    match value {
        serde_json::Value::Null => Err(bad(
            field,
            "is null, which a request file in TOML cannot hold: remove it",
        )),
        serde_json::Value::Number(n) if n.is_u64() && n.as_i64().is_none() => Err(bad(
            field,
            format!(
                "{n} is larger than a TOML integer (at most 2^63 − 1): make it smaller or a string"
            ),
        )),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_param(&format!("{field}[{i}]"), v)),
        serde_json::Value::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| check_param(&format!("{field}.{k}"), v)),
        _ => Ok(()),
    }
}

fn check_keepup(raw: &RawKeepup) -> Result<Keepup, RequestError> {
    check_text("keepup.dataset", &raw.dataset, MAX_TITLE, true)?;
    let every_seconds = parse_duration(&raw.every).ok_or_else(|| {
        bad(
            "keepup.every",
            format!(
                "`{}` is not a duration: write e.g. 30m, 6h or 1d",
                raw.every
            ),
        )
    })?;
    check_range("keepup.every (seconds)", every_seconds, 60, 366 * 86_400)?;
    Ok(Keepup {
        every_seconds,
        dataset: raw.dataset.clone(),
    })
}

/// Parses `90s`, `30m`, `6h`, `1d` into seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].trim().parse().ok()?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(factor).filter(|v| *v > 0)
}

fn check_input(field: &str, input: &InputSpec) -> Result<(), RequestError> {
    if input.dataset.is_none() && input.files.is_empty() && input.glob.is_none() {
        return Err(bad(field, "is empty: give `dataset`, `files` or `glob`"));
    }
    if let Some(d) = &input.dataset {
        check_text(&format!("{field}.dataset"), d, 1000, true)?;
    }
    if input.files.len() > MAX_JOBS_PER_STAGE as usize {
        return Err(bad(
            format!("{field}.files"),
            format!("at most {MAX_JOBS_PER_STAGE} files may be listed: use a dataset instead"),
        ));
    }
    for (i, f) in input.files.iter().enumerate() {
        check_text(&format!("{field}.files[{i}]"), f, 4096, true)?;
    }
    Ok(())
}

fn check_completion(field: &str, c: &Completion) -> Result<(), RequestError> {
    if let Some(n) = c.events_at_least {
        check_range(&format!("{field}.events_at_least"), n, 1, MAX_EVENTS)?;
    }
    if let Some(s) = &c.check_script {
        check_text(&format!("{field}.check_script"), s, 4096, true)?;
    }
    if let Some(s) = &c.outputs_at {
        check_text(&format!("{field}.outputs_at"), s, 4096, true)?;
    }
    Ok(())
}

fn merge_resources(
    field: &str,
    base: &Resources,
    raw: Option<&RawResources>,
) -> Result<Resources, RequestError> {
    let Some(raw) = raw else {
        return Ok(base.clone());
    };
    let r = Resources {
        memory_mb: raw.memory_mb.unwrap_or(base.memory_mb),
        wall_hours: raw.wall_hours.unwrap_or(base.wall_hours),
        cpus: raw.cpus.unwrap_or(base.cpus),
        disk_mb: raw.disk_mb.unwrap_or(base.disk_mb),
    };
    check_range(&format!("{field}.memory_mb"), r.memory_mb, 1, 1_048_576)?;
    check_range(&format!("{field}.cpus"), r.cpus, 1, 256)?;
    check_range(&format!("{field}.disk_mb"), r.disk_mb, 1, 100_000_000)?;
    if !(r.wall_hours > 0.0 && r.wall_hours <= 720.0) {
        return Err(bad(
            format!("{field}.wall_hours"),
            format!("must be more than 0 and at most 720 (got {})", r.wall_hours),
        ));
    }
    Ok(r)
}

fn merge_sites(field: &str, base: &Sites, raw: Option<&RawSites>) -> Result<Sites, RequestError> {
    let Some(raw) = raw else {
        return Ok(base.clone());
    };
    let sites = Sites {
        usage_model: raw
            .usage_model
            .clone()
            .unwrap_or_else(|| base.usage_model.clone()),
        include: raw.include.clone().unwrap_or_else(|| base.include.clone()),
        exclude: raw.exclude.clone().unwrap_or_else(|| base.exclude.clone()),
    };
    for (i, m) in sites.usage_model.iter().enumerate() {
        if !USAGE_MODELS.contains(&m.as_str()) {
            return Err(bad(
                format!("{field}.usage_model[{i}]"),
                format!("unknown slot type `{m}`: use {}", USAGE_MODELS.join(", ")),
            ));
        }
    }
    for (name, list) in [("include", &sites.include), ("exclude", &sites.exclude)] {
        for (i, s) in list.iter().enumerate() {
            check_text(&format!("{field}.{name}[{i}]"), s, MAX_TITLE, true)?;
        }
    }
    Ok(sites)
}

fn check_backend(field: &str, backend: &str) -> Result<(), RequestError> {
    if BACKENDS.contains(&backend) {
        Ok(())
    } else {
        Err(bad(
            field,
            format!(
                "unknown backend `{backend}`: use one of {}",
                BACKENDS.join(", ")
            ),
        ))
    }
}

fn check_range(field: &str, v: i64, min: i64, max: i64) -> Result<(), RequestError> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("must be between {min} and {max} (got {v})"),
        ))
    }
}

/// Checks a one-line text field: no control characters, not too long, not blank if required.
fn check_text(field: &str, v: &str, max: usize, required: bool) -> Result<(), RequestError> {
    check_any_text(field, v, max, required, false)
}

fn check_any_text(
    field: &str,
    v: &str,
    max: usize,
    required: bool,
    multiline: bool,
) -> Result<(), RequestError> {
    if required && v.trim().is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(bad(
            field,
            format!("is longer than {max} characters: shorten it"),
        ));
    }
    let allowed = |c: char| multiline && (c == '\n' || c == '\t');
    if v.chars().any(|c| c.is_control() && !allowed(c)) {
        let what = if multiline {
            "control characters"
        } else {
            "line breaks, tabs or control characters"
        };
        return Err(bad(field, format!("contains {what}: remove them")));
    }
    Ok(())
}

/// Names (experiments, stages) are short identifiers: letters, digits, `_`, `-`.
pub fn check_name(field: &str, v: &str) -> Result<(), RequestError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("`{v}` is not a name: use 1–64 letters, digits, `_` or `-`"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MC: &str = r#"
experiment = "nova"
kind = "mc"
title = "Cosmic MC"
[defaults]
release = "v1"
[[stage]]
name = "gen"
script = "gen.sh"
events = 1000
events_per_job = 100
seed_base = 7
[[stage]]
name = "sim"
after = ["gen"]
script = "sim.sh"
files_per_job = 1
"#;

    fn err(text: &str) -> RequestError {
        parse_request(text.as_bytes(), Format::Toml).unwrap_err()
    }

    #[test]
    fn x2_valid_mc_request_resolves_defaults() {
        let r = parse_request(MC.as_bytes(), Format::Toml).unwrap();
        assert_eq!(r.spec.stages[1].release, "v1");
        assert_eq!(
            r.spec.stages[0].generation.as_ref().unwrap().job_count(),
            10
        );
        assert_eq!(r.meta.priority, 50);
    }

    #[test]
    fn x3_hash_changes_with_spec_not_with_priority() {
        let a = parse_request(MC.as_bytes(), Format::Toml).unwrap();
        let b = parse_request(
            MC.replace("priority", "x")
                .replace(
                    "title = \"Cosmic MC\"",
                    "title = \"Cosmic MC\"\npriority = 90",
                )
                .as_bytes(),
            Format::Toml,
        )
        .unwrap();
        assert_eq!(a.spec.hash(), b.spec.hash());
        let c = parse_request(
            MC.replace("seed_base = 7", "seed_base = 8").as_bytes(),
            Format::Toml,
        )
        .unwrap();
        assert_ne!(a.spec.hash(), c.spec.hash());
    }

    #[test]
    fn p4_errors_name_the_field() {
        assert_eq!(
            err(&MC.replace("events = 1000", "events = -5")).field,
            "stage[0].events"
        );
        assert_eq!(err(&MC.replace("title = \"Cosmic MC\"", "")).field, "title");
        assert_eq!(
            err(&MC.replace("after = [\"gen\"]", "after = [\"gne\"]")).field,
            "stage[1].after[0]"
        );
        assert_eq!(
            err(&MC.replace("seed_base = 7", "sead_base = 7")).field,
            "stage[0].sead_base"
        );
        assert_eq!(err(&MC.replace("kind = \"mc\"", "kind = 3")).field, "kind");
        assert!(err("x = ").field.starts_with("line 1"));
    }

    #[test]
    fn j8_cyclic_stages_are_refused_with_the_cycle() {
        let e = err(&MC.replace("name = \"gen\"", "name = \"gen\"\nafter = [\"sim\"]"));
        assert!(e.message.contains("gen → sim → gen"), "{e}");
    }

    #[test]
    fn p4_values_json_cannot_hold_are_refused_not_dropped() {
        let e = err(&MC.replace(
            "release = \"v1\"",
            "release = \"v1\"\nresources = { wall_hours = nan }",
        ));
        assert_eq!(e.field, "defaults.resources.wall_hours");
        assert_eq!(
            err(&MC.replace("events = 1000", "events = inf")).field,
            "stage[0].events"
        );
        let e = err(&MC.replace("title = \"Cosmic MC\"", "title = 2026-11-23"));
        assert_eq!(e.field, "title");
        assert!(e.message.contains("quote it"), "{e}");
    }

    #[test]
    fn p4_one_line_fields_refuse_line_breaks_and_messages_keep_user_text() {
        assert_eq!(err(&MC.replace("Cosmic MC", "Cosmic\\nMC")).field, "title");
        let e = err(&MC.replace("events = 1000", "events = \"f64\""));
        assert!(e.message.contains("\"f64\""), "{e}");
        assert!(e.message.contains("expected an integer"), "{e}");
        let e = err(&MC.replace("after = [\"gen\"]", "after = [\"gen\", \"gen\"]"));
        assert_eq!(e.field, "stage[1].after[1]");
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let e = parse_request(b"title = \"\xff\"", Format::Toml).unwrap_err();
        assert_eq!(e.field, "file");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1d"), Some(86_400));
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("0h"), None);
    }
}
