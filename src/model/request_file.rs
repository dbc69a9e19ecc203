//! A stored request written back as its request file (TOML), for showing,
//! diffing and `request edit`: filing the text again gives the same spec hash.
//!
//! The layout is fixed so two renderings diff line by line: the top-level
//! keys, `[defaults]` (each stage setting most stages share), `[input]`,
//! `[keepup]`, then one `[[stage]]` per stage in the stored order (the DAG
//! order), `name` first, one key per line, strings on one line.

use super::request::RequestError;
use super::spec::{Executable, RequestMeta, Resources, Sites, Spec, StageSpec};
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write;

/// Renders a request (its descriptive part and its spec) as a request file.
/// Fails only for values TOML cannot hold (a null or an integer beyond
/// 64 bits in free-form `params`), which filing refuses.
pub fn request_toml(meta: &RequestMeta, spec: &Spec) -> Result<String, RequestError> {
    let mut out = Out::default();
    out.key("experiment", &Value::from(spec.experiment.as_str()))?;
    out.key("kind", &Value::from(spec.kind.as_str()))?;
    out.key("title", &Value::from(meta.title.as_str()))?;
    out.key("priority", &Value::from(meta.priority))?;
    out.optional("physics_group", meta.physics_group.as_deref())?;
    out.optional("description", meta.description.as_deref())?;
    let defaults = Defaults::of(&spec.stages);
    defaults.write(&mut out)?;
    if let Some(input) = &spec.input {
        out.table("input");
        out.fields(&json(input))?;
    }
    if let Some(keepup) = &spec.keepup {
        out.table("keepup");
        out.key("every", &Value::from(duration(keepup.every_seconds)))?;
        out.key("dataset", &Value::from(keepup.dataset.as_str()))?;
    }
    for stage in &spec.stages {
        write_stage(&mut out, stage, &defaults)?;
    }
    Ok(out.text)
}

/// The stage settings written once under `[defaults]`: the value most stages
/// share (the first of equally common ones), so each stage lists only where it differs.
struct Defaults {
    release: String,
    application: Option<String>,
    backend: String,
    resources: Resources,
    sites: Sites,
    max_attempts: i64,
}

impl Defaults {
    fn of(stages: &[StageSpec]) -> Defaults {
        let most = |f: &dyn Fn(&StageSpec) -> Value| most_common(stages.iter().map(f).collect());
        let pick = |f: &dyn Fn(&StageSpec) -> Value| most(f).0;
        let (application, sharing) = most(&|s| json(&s.application));
        let everyone_has_one = stages.iter().all(|s| s.application.is_some());
        let shared = everyone_has_one && (sharing > 1 || stages.len() == 1);
        Defaults {
            release: string(&pick(&|s| json(&s.release))),
            application: application.as_str().filter(|_| shared).map(str::to_string),
            backend: string(&pick(&|s| json(&s.backend))),
            resources: serde_json::from_value(pick(&|s| json(&s.resources))).unwrap_or_default(),
            sites: serde_json::from_value(pick(&|s| json(&s.sites))).unwrap_or_default(),
            max_attempts: pick(&|s| json(&s.max_attempts)).as_i64().unwrap_or(3),
        }
    }

    fn write(&self, out: &mut Out) -> Result<(), RequestError> {
        out.table("defaults");
        out.key("release", &json(&self.release))?;
        out.optional("application", self.application.as_deref())?;
        out.key("backend", &json(&self.backend))?;
        out.key("resources", &json(&self.resources))?;
        out.key("sites", &json(&self.sites))?;
        out.key("max_attempts", &json(&self.max_attempts))
    }
}

fn write_stage(out: &mut Out, stage: &StageSpec, defaults: &Defaults) -> Result<(), RequestError> {
    out.stage();
    out.key("name", &json(&stage.name))?;
    if !stage.after.is_empty() {
        out.key("after", &json(&stage.after))?;
    }
    if stage.application != defaults.application {
        out.optional("application", stage.application.as_deref())?;
    }
    if stage.release != defaults.release {
        out.key("release", &json(&stage.release))?;
    }
    if stage.backend != defaults.backend {
        out.key("backend", &json(&stage.backend))?;
    }
    match &stage.executable {
        Executable::Script { path, args, .. } => {
            out.key("script", &json(path))?;
            if !args.is_empty() {
                out.key("args", &json(args))?;
            }
        }
        Executable::Launch(launch) => out.key("launch", &json(launch))?,
    }
    if let Some(input) = &stage.input {
        out.key("input", &json(input))?;
    }
    if let Some(generation) = &stage.generation {
        out.key("events", &json(&generation.events))?;
        out.key("events_per_job", &json(&generation.events_per_job))?;
        out.key("seed_base", &json(&generation.seed_base))?;
    }
    if let Some(files) = stage.files_per_job {
        out.key("files_per_job", &json(&files))?;
    }
    if !stage.params.is_empty() {
        out.key("params", &Value::Object(stage.params.clone()))?;
    }
    if stage.resources != defaults.resources {
        out.key("resources", &json(&stage.resources))?;
    }
    if stage.sites != defaults.sites {
        out.key("sites", &json(&stage.sites))?;
    }
    if !stage.complete_when.is_empty() {
        out.key("complete_when", &json(&stage.complete_when))?;
    }
    if stage.max_attempts != defaults.max_attempts {
        out.key("max_attempts", &json(&stage.max_attempts))?;
    }
    Ok(())
}

/// The text written so far and the dotted path of the table being written
/// (for errors).
#[derive(Default)]
struct Out {
    text: String,
    table: String,
    stages: usize,
}

impl Out {
    fn table(&mut self, name: &str) {
        let _ = write!(self.text, "\n[{name}]\n");
        self.table = name.to_string();
    }

    /// Starts the next `[[stage]]`.
    fn stage(&mut self) {
        self.text.push_str("\n[[stage]]\n");
        self.table = format!("stage[{}]", self.stages);
        self.stages += 1;
    }

    fn key(&mut self, key: &str, value: &Value) -> Result<(), RequestError> {
        let field = if self.table.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.table)
        };
        let rendered = inline(value, &field)?;
        let _ = writeln!(self.text, "{} = {rendered}", bare_or_quoted(key));
        Ok(())
    }

    fn optional(&mut self, key: &str, value: Option<&str>) -> Result<(), RequestError> {
        match value {
            Some(v) => self.key(key, &Value::from(v)),
            None => Ok(()),
        }
    }

    /// Each field of an object on its own line.
    fn fields(&mut self, object: &Value) -> Result<(), RequestError> {
        if let Value::Object(map) = object {
            for (k, v) in map {
                self.key(k, v)?;
            }
        }
        Ok(())
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value).expect("spec values always serialise")
}

fn string(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// The most frequent value (the earliest of equally frequent ones) and how
/// often it occurs; `Null` for no values.
fn most_common(values: Vec<Value>) -> (Value, usize) {
    let count = |v: &Value| values.iter().filter(|w| *w == v).count();
    let mut best: (Value, usize) = (Value::Null, 0);
    for v in &values {
        let n = count(v);
        if n > best.1 {
            best = (v.clone(), n);
        }
    }
    best
}

/// A period in the largest whole unit: `1d`, `6h`, `30m`, `90s`.
fn duration(seconds: i64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// A JSON value as an inline TOML value on one line.
fn inline(value: &Value, field: &str) -> Result<String, RequestError> {
    Ok(match value {
        Value::Null => {
            return Err(RequestError {
                field: field.to_string(),
                message: "is null, which a TOML request file cannot hold: remove it".into(),
            })
        }
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n, field)?,
        Value::String(s) => quoted(s),
        Value::Array(items) => {
            let parts = items
                .iter()
                .enumerate()
                .map(|(i, v)| inline(v, &format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) if map.is_empty() => "{}".to_string(),
        Value::Object(map) => {
            let parts = map
                .iter()
                .map(|(k, v)| {
                    let rendered = inline(v, &format!("{field}.{k}"))?;
                    Ok(format!("{} = {rendered}", bare_or_quoted(k)))
                })
                .collect::<Result<Vec<_>, RequestError>>()?;
            format!("{{ {} }}", parts.join(", "))
        }
    })
}

fn number(n: &serde_json::Number, field: &str) -> Result<String, RequestError> {
    if let Some(i) = n.as_i64() {
        return Ok(i.to_string());
    }
    if n.is_u64() {
        return Err(RequestError {
            field: field.to_string(),
            message: format!(
                "{n} is larger than a TOML integer (at most 2^63 − 1): make it smaller or a string"
            ),
        });
    }
    Ok(format!("{:?}", n.as_f64().unwrap_or_default()))
}

fn bare_or_quoted(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        quoted(key)
    }
}

/// A TOML basic string on one line: quotes, backslashes and control characters escaped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::request::{parse_request, Format, ValidRequest};

    fn parse(text: &str) -> ValidRequest {
        parse_request(text.as_bytes(), Format::Toml).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn example(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name);
        std::fs::read_to_string(path).unwrap()
    }

    /// Files `text`, writes it back, files that: same spec, same hash, same
    /// descriptive fields, and writing it back again changes nothing.
    fn assert_round_trip(text: &str) -> String {
        let filed = parse(text);
        let written = request_toml(&filed.meta, &filed.spec).unwrap();
        let again = parse(&written);
        assert_eq!(again.spec.hash(), filed.spec.hash(), "{written}");
        assert_eq!(again.spec, filed.spec);
        assert_eq!(again.meta, filed.meta);
        assert_eq!(request_toml(&again.meta, &again.spec).unwrap(), written);
        written
    }

    const EVERYTHING: &str = r#"
experiment = "nova"
kind = "calib"
title = "  Calib \"A\", with 'quotes' \\ and ünïcode  "
priority = 7
description = "two\nlines\twith a tab"
[defaults]
release = "v1"
backend = "slurm"
resources = { memory_mb = 900 }
max_attempts = 5
[input]
dataset = "raw"
glob = "*.root"
[keepup]
every = "90m"
dataset = "raw"
[[stage]]
name = "check"
after = ["calib"]
launch = { command = "/bin/true", args = ["--x", "a b"], job_id_pattern = "id (\\S+)" }
sites = { include = ["FNAL"], exclude = ["X"] }
complete_when = { signoff = true, outputs_at = "/tape" }
[[stage]]
name = "calib"
application = "calibrate"
release = "v2"
backend = "local"
script = "calib.sh"
args = ["-n", "3"]
input = { files = ["/a", "/b"] }
files_per_job = 2
params = { "dotted.key" = 1.0, nested = { list = [1, 2.5, "x"], empty = {} }, flag = false, big = 9007199254740993 }
resources = { wall_hours = 0.5, cpus = 2 }
max_attempts = 1
"#;

    #[test]
    fn x3_every_field_of_a_request_survives_being_written_back_as_toml() {
        let written = assert_round_trip(EVERYTHING);
        assert!(
            written.contains("description = \"two\\nlines\\twith a tab\"\n"),
            "{written}"
        );
        assert!(written.contains("every = \"90m\"\n"), "{written}");
        assert!(written.contains("\"dotted.key\" = 1.0"), "{written}");
    }

    #[test]
    fn x3_the_examples_are_written_back_with_the_same_spec_hash() {
        assert_round_trip(&example("mc-request.toml"));
        assert_round_trip(&example("reco-keepup.toml"));
    }

    #[test]
    fn written_requests_keep_one_key_per_line_stages_in_dag_order_and_name_first() {
        let written = assert_round_trip(EVERYTHING);
        let stages: Vec<&str> = written
            .split("[[stage]]\n")
            .skip(1)
            .map(|s| s.lines().next().unwrap())
            .collect();
        assert_eq!(
            stages,
            ["name = \"calib\"", "name = \"check\""],
            "parents first"
        );
        for line in written
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('['))
        {
            assert!(line.contains(" = "), "one `key = value` per line: {line}");
        }
        let mc = assert_round_trip(&example("mc-request.toml"));
        let expected_start = "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"Cosmic MC, FHC, 1000 events\"\npriority = 50\nphysics_group = \"numu\"\ndescription = \"Cosmic background sample for the 2027 analysis\"\n\n[defaults]\nrelease = \"v09_91_02\"\nbackend = \"local\"\nresources = { cpus = 1, disk_mb = 10000, memory_mb = 500, wall_hours = 1.0 }\nsites = { exclude = [], include = [], usage_model = [\"DEDICATED\", \"OPPORTUNISTIC\"] }\nmax_attempts = 3\n\n[[stage]]\nname = \"gen\"\napplication = \"cry_gen\"\nscript = \"scripts/gen.sh\"\nevents = 1000\n";
        assert!(mc.starts_with(expected_start), "{mc}");
    }

    #[test]
    fn x3_a_stage_listed_before_its_parent_is_stored_in_dag_order() {
        let forward = parse(EVERYTHING);
        let names: Vec<&str> = forward
            .spec
            .stages
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["calib", "check"]);
    }

    #[test]
    fn x3_request_show_json_is_accepted_back_as_a_request_file() {
        let filed = parse(&example("mc-request.toml"));
        let shown = serde_json::json!({
            "id": "C1", "experiment": "nova", "kind": "mc", "title": filed.meta.title,
            "priority": 50, "state": "approved", "physics_group": "numu",
            "description": filed.meta.description, "spec_hash": filed.spec.hash(),
            "spec": serde_json::from_str::<Value>(&filed.spec.canonical_json()).unwrap(),
        });
        let back = parse_request(shown.to_string().as_bytes(), Format::Json).unwrap();
        assert_eq!(back.spec.hash(), filed.spec.hash());
        assert_eq!(back.meta, filed.meta);
    }

    #[test]
    fn p4_json_params_toml_cannot_hold_are_refused_with_their_field() {
        let json = |params: &str| {
            format!(
                r#"{{"experiment":"nova","kind":"mc","title":"t","defaults":{{"release":"v1"}},
                "stage":[{{"name":"gen","script":"g.sh","events":1,"events_per_job":1,"seed_base":1,"params":{params}}}]}}"#
            )
        };
        let err = |params: &str| parse_request(json(params).as_bytes(), Format::Json).unwrap_err();
        assert_eq!(
            err(r#"{"a":{"b":[1,null]}}"#).field,
            "stage[0].params.a.b[1]"
        );
        assert_eq!(
            err(r#"{"n":18446744073709551615}"#).field,
            "stage[0].params.n"
        );
        assert!(parse_request(json(r#"{"n":1}"#).as_bytes(), Format::Json).is_ok());
    }
}
