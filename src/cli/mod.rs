//! The command line: every action of `ops`, with `--json` on every command and
//! exit codes 0 ok, 1 error, 2 usage, 3 forbidden.

mod db;
mod demo;
mod edit;
mod output;
mod shell;
mod worker;

use crate::model::hold::HoldScope;
use crate::model::ids::{CampaignId, EntityKind, EntityRef, JobId, SubtaskId};
use crate::model::role::{Grant, Role, ALL_EXPERIMENTS};
use crate::model::spec::TaskKind;
use crate::model::state::{CampaignState, Lifecycle};
use crate::ops::{Actor, Ops, OpsError};
use crate::store::campaigns::CampaignFilter;
use crate::store::{default_sqlite_path, Store};
use anyhow::{anyhow, Context};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for an error (bad input, illegal transition, database trouble).
pub const EXIT_ERROR: i32 = 1;
/// Exit code for a usage error (clap's own).
pub const EXIT_USAGE: i32 = 2;
/// Exit code for an action refused for lack of a role.
pub const EXIT_FORBIDDEN: i32 = 3;
/// Exit code of `--batch` when it stopped with work it could not do: jobs a
/// failing pre-launch check (or a missing or refusing backend) kept back.
pub const EXIT_WAITING: i32 = 4;

/// prodops — production operations: requests, approvals, campaigns and their jobs.
#[derive(Debug, Parser)]
#[command(name = "prodops", version, about, long_about = None)]
pub struct Cli {
    /// Database: a file path (SQLite) or postgres://… URL. Default: prodops.db in the data dir.
    #[arg(long, global = true, env = "PRODOPS_DB", value_name = "PATH|URL")]
    db: Option<String>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Act as another user (admins only; audited as `you as USER`).
    #[arg(long = "as", global = true, value_name = "USER")]
    as_user: Option<String>,
    /// Run the worker headless until nothing is left to do (for cron).
    #[arg(long)]
    batch: bool,
    /// With --batch: run a single worker pass.
    #[arg(long, requires = "batch")]
    once: bool,
    /// With --batch: when another worker holds the lease, wait for it quietly instead of leaving.
    #[arg(long, requires = "batch")]
    wait: bool,
    #[command(flatten)]
    worker: worker::WorkerArgs,
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// How the console looks and behaves (`prodops` with no command, and `demo`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Console")]
struct ConsoleArgs {
    /// Keymap: default or vim (or your own in the config dir).
    #[arg(long, default_value = "default", value_name = "NAME")]
    keymap: String,
    /// Theme: dark, light or high-contrast (or your own). NO_COLOR is respected.
    #[arg(long, default_value = "dark", value_name = "NAME")]
    theme: String,
    /// Hide and refuse every action that changes production state.
    #[arg(long)]
    readonly: bool,
    /// Only watch: do not run the worker in the console's process.
    #[arg(long)]
    no_worker: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// File, list, show, clone or edit requests.
    #[command(subcommand)]
    Request(RequestCmd),
    /// Approve a pending request (approvers).
    Approve {
        /// Request id, e.g. C3 or 3.
        id: CampaignId,
        /// Why, recorded in history.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Reject a pending request (approvers).
    Reject {
        /// Request id.
        id: CampaignId,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// Fold pending requests into one (approvers).
    Consolidate {
        /// The request that absorbs the others.
        target: CampaignId,
        /// Requests folded into it.
        #[arg(required = true)]
        others: Vec<CampaignId>,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Set the priority (0–1000, higher first) of queued work.
    #[command(allow_negative_numbers = true)]
    Priority {
        /// Request id.
        id: CampaignId,
        /// New priority.
        value: i64,
    },
    /// Hold a request or campaign (submissions stop, queued jobs are held; --running: running jobs too), or jobs.
    Hold(HoldArgs),
    /// Release a held request or campaign, or held jobs.
    Release(Targets),
    /// Cancel a request or abort a campaign.
    Cancel(Change),
    /// Remove jobs from their batch system for good (as condor_rm or scancel do); never retried.
    Remove {
        /// Job ids, e.g. J5 J6.
        #[arg(required = true)]
        jobs: Vec<JobId>,
        /// Why, recorded in the jobs' history.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List or show campaigns with their tasks and progress.
    #[command(subcommand)]
    Campaign(CampaignCmd),
    /// Every state transition of an entity (C12, T3, S4, B5, J6).
    History {
        /// Entity id; a bare number is a request.
        entity: EntityRef,
    },
    /// Register users and grant roles (admins).
    #[command(subcommand)]
    User(UserCmd),
    /// Register experiments (admins).
    #[command(subcommand)]
    Experiment(ExperimentCmd),
    /// Make, upgrade, check or back up the database.
    #[command(subcommand)]
    Db(db::DbCmd),
    /// Run the configuration's pre-launch checks now and print their verdicts (exit 1 when one fails).
    Check,
    /// Show or check the configuration file (batch systems, worker defaults).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Resubmit only the failed parts of a campaign, task, subtask, batch or job (operators).
    Resubmit {
        /// C, T, S, B or J id.
        scope: EntityRef,
        /// Why, recorded in history.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Sign a subtask off so a `signoff` completion criterion is met.
    Signoff {
        /// Subtask id, e.g. S4.
        subtask: SubtaskId,
        /// Why, recorded in the audit trail.
        #[arg(long, default_value = "signed off")]
        reason: String,
    },
    /// List a campaign's jobs with their state, time in state, site and resources.
    Jobs {
        /// Campaign id.
        campaign: CampaignId,
        /// Only these states (repeatable).
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Rows to skip.
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show one job with its stages and resources.
    Job {
        /// Job id, e.g. J12.
        id: JobId,
    },
    /// File and approve the example Monte-Carlo campaign on a demo database and run it
    /// (about a minute; on 2 local slots unless --slots says otherwise).
    Demo {
        /// Headless: no console, progress lines only; exit 0 when the campaign succeeded.
        #[arg(long)]
        batch: bool,
        /// Only file and approve the campaign; leave running it to `prodops --batch`.
        #[arg(long)]
        setup_only: bool,
        /// Seconds each step of a demo job takes, so its stages can be watched
        /// [default: 2; 0 with --setup-only].
        #[arg(long, value_name = "SECONDS", value_parser = demo::parse_pace)]
        pace: Option<std::time::Duration>,
        #[command(flatten)]
        worker: worker::WorkerArgs,
    },
    /// Measure prodops on this machine beside the tools users would otherwise pick.
    Bench(BenchArgs),
    /// Run one job on a batch node: its stages, measured, from a job.json (used by backends).
    JobRun {
        /// The job spec written by the worker.
        #[arg(long, default_value = crate::model::jobspec::files::SPEC)]
        spec: PathBuf,
    },
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, prodops(1), in roff (or write every command's page to a folder).
    Man {
        /// Write prodops.1 and one page per command (prodops-request-edit.1, …) here instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The local batch system's daemon (workers start it; it exits when idle).
    LocalExecutor {
        /// Its directory: command and event logs, one working directory per job.
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// Jobs at once (workers may change it).
        #[arg(long, value_name = "N", default_value_t = 1)]
        slots: usize,
    },
}

#[derive(Debug, Args)]
struct Change {
    /// Request id.
    id: CampaignId,
    /// Why, recorded in history.
    #[arg(long, default_value = "")]
    reason: String,
}

/// What `hold` acts on and how far.
#[derive(Debug, Args)]
struct HoldArgs {
    #[command(flatten)]
    targets: Targets,
    /// For a campaign: hold its running jobs too (HTCondor and jobsub evict them and start them again on release, Slurm requeues them held, the local executor stops them).
    #[arg(long)]
    running: bool,
}

/// One request or campaign (C1), or job ids (J5 J6).
#[derive(Debug, Args)]
struct Targets {
    /// A request or campaign id, or job ids.
    #[arg(required = true, value_name = "C|J")]
    ids: Vec<EntityRef>,
    /// Why, recorded in history.
    #[arg(long, default_value = "")]
    reason: String,
}

impl Targets {
    /// The one campaign named, or the jobs.
    fn split(&self) -> anyhow::Result<Result<CampaignId, Vec<JobId>>> {
        let jobs: Vec<JobId> = self
            .ids
            .iter()
            .filter(|e| e.kind == EntityKind::Job)
            .map(|e| JobId(e.id))
            .collect();
        match self.ids.as_slice() {
            [one] if one.kind == EntityKind::Campaign => Ok(Ok(CampaignId(one.id))),
            _ if jobs.len() == self.ids.len() => Ok(Err(jobs)),
            _ => Err(anyhow!(
                "give one request or campaign (C1) or job ids (J5 J6), not both or other kinds"
            )),
        }
    }
}

#[derive(Debug, Subcommand)]
enum RequestCmd {
    /// File a request from a TOML or JSON file.
    New {
        /// The request file.
        file: PathBuf,
    },
    /// List requests (pending approval with --pending, finished with --completed).
    List(ListArgs),
    /// Show one request with its spec.
    Show {
        /// Request id.
        id: CampaignId,
        /// Print it as its request file (TOML), which `request edit --file` accepts back.
        #[arg(long)]
        toml: bool,
    },
    /// File a copy of a request.
    Clone {
        /// Request to copy.
        id: CampaignId,
        /// Title of the copy.
        #[arg(long)]
        title: Option<String>,
    },
    /// Replace a request's spec; a changed spec needs approval again. Without
    /// a file: opens it as TOML in $VISUAL or $EDITOR (else vi) until it is valid.
    Edit {
        /// Request id.
        id: CampaignId,
        /// The new request file (TOML, JSON, or `request show --json` output; `-` reads stdin).
        #[arg(value_name = "FILE")]
        path: Option<PathBuf>,
        /// The same as FILE.
        #[arg(long, value_name = "FILE", conflicts_with = "path")]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only these states (repeatable).
    #[arg(long = "state", value_name = "STATE")]
    states: Vec<String>,
    /// Only this experiment.
    #[arg(long)]
    experiment: Option<String>,
    /// Only requests pending approval.
    #[arg(long, conflicts_with_all = ["states", "completed"])]
    pending: bool,
    /// Only finished requests (succeeded, failed, rejected, consolidated, cancelled).
    #[arg(long, conflicts_with = "states")]
    completed: bool,
    /// At most this many rows.
    #[arg(long)]
    limit: Option<i64>,
}

#[derive(Debug, Subcommand)]
enum CampaignCmd {
    /// List campaigns (approved and later).
    List(ListArgs),
    /// Show a campaign's tasks, subtasks and progress.
    Show {
        /// Campaign id.
        id: CampaignId,
    },
}

#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Grant a role; the first user ever added makes the caller admin.
    Add {
        /// Login name.
        name: String,
        /// experimenter, approver, operator, supervisor, reviewer, guest or admin.
        #[arg(long)]
        role: String,
        /// Experiment the role applies to (default: all).
        #[arg(long, default_value = ALL_EXPERIMENTS)]
        experiment: String,
        /// For approvers per production stage: the request kind they approve.
        #[arg(long)]
        kind: Option<String>,
        /// Grid certificate DN mapped to this user.
        #[arg(long)]
        dn: Option<String>,
        /// Bearer token subject mapped to this user.
        #[arg(long)]
        token_subject: Option<String>,
    },
    /// List users and their roles.
    List,
}

#[derive(Debug, Subcommand)]
enum ExperimentCmd {
    /// Register an experiment.
    Add {
        /// Short name, e.g. nova.
        name: String,
        /// Kinds approved without an approver, comma-separated (never mc).
        #[arg(long, value_delimiter = ',')]
        auto_approve: Vec<String>,
    },
    /// List experiments.
    List,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Scenarios to run (default: all of them).
    #[arg(value_enum, value_name = "SCENARIO")]
    scenarios: Vec<crate::bench::Scenario>,
    /// Smaller sizes and no peers (what CI runs, so the benchmarks never rot).
    #[arg(long)]
    quick: bool,
    /// Rounds per scenario; medians are printed [default: 3, or 1 with --quick].
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,
    /// A Python venv with snakemake and luigi (scripts/bench.sh makes a throwaway one).
    #[arg(long, value_name = "DIR")]
    peers: Option<PathBuf>,
    /// A PostgreSQL server for the ingest scenario (a schema is made and dropped).
    #[arg(long, value_name = "URL")]
    pg: Option<String>,
    /// One round of one scenario in this process, figures as JSON (the suite runs these).
    #[arg(long, value_name = "SCENARIO", hide = true)]
    round: Option<crate::bench::Scenario>,
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Print the configuration in effect (the file, or the defaults).
    Show {
        /// A file instead of the one in effect.
        file: Option<PathBuf>,
    },
    /// Check a configuration file: errors name the file, line and key.
    Validate {
        /// The file (default: the one in effect).
        file: Option<PathBuf>,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    // Output piped into `head` and the like ends quietly when the reader
    // goes, as with other command-line tools (Rust ignores SIGPIPE otherwise).
    // SAFETY: restoring a signal's default disposition at startup.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    if let Some(Command::JobRun { spec }) = &cli.command {
        return crate::jobrun::main(spec);
    }
    if let Some(Command::LocalExecutor { root, slots }) = &cli.command {
        return crate::batch::local::executor::main(root, *slots);
    }
    if let Some(Command::Completions { shell }) = &cli.command {
        return shell::completions(*shell);
    }
    if let Some(Command::Man { dir }) = &cli.command {
        return shell::man(dir.as_deref());
    }
    if let Some(Command::Config(cmd)) = &cli.command {
        return run_config(cmd, cli.json, cli.worker.config.as_deref());
    }
    if let Some(Command::Bench(cmd)) = &cli.command {
        return run_bench(cmd, cli.json);
    }
    let wants_console = matches!(
        cli.command,
        None | Some(Command::Demo {
            batch: false,
            setup_only: false,
            ..
        })
    ) && !cli.batch;
    if wants_console && !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        eprintln!("error: the console needs a terminal; give a command (see --help), or --batch to run the worker headless");
        return EXIT_USAGE;
    }
    let Some(runtime) = runtime() else {
        return EXIT_ERROR;
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => EXIT_OK,
        Err(e) if e.is::<worker::WorkWaiting>() => {
            eprintln!("worker: {e}");
            EXIT_WAITING
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            let forbidden = e
                .downcast_ref::<OpsError>()
                .is_some_and(OpsError::is_forbidden);
            if forbidden {
                EXIT_FORBIDDEN
            } else {
                EXIT_ERROR
            }
        }
    }
}

/// The async runtime every command runs on; `None` (reported) when it cannot start.
fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| eprintln!("error: cannot start the async runtime: {e}"))
        .ok()
}

/// `prodops config show|validate`: reads the file without touching a database.
fn run_config(cmd: &ConfigCmd, json: bool, in_effect: Option<&std::path::Path>) -> i32 {
    let (ConfigCmd::Show { file } | ConfigCmd::Validate { file }) = cmd;
    let (config, source) = match crate::config::load(file.as_deref().or(in_effect)) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_ERROR;
        }
    };
    let source_text = match &source {
        Some(path) => path.display().to_string(),
        None => format!(
            "no file at {}: the defaults",
            crate::config::default_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(no config dir)".into())
        ),
    };
    match cmd {
        ConfigCmd::Validate { .. } if json => {
            println!("{}", serde_json::json!({ "ok": true, "file": source }))
        }
        ConfigCmd::Validate { .. } => println!("ok: {source_text}"),
        ConfigCmd::Show { .. } if json => println!(
            "{}",
            serde_json::json!({ "file": source, "config": config })
        ),
        ConfigCmd::Show { .. } => {
            print!(
                "# {source_text}\n{}",
                toml::to_string_pretty(&config).unwrap_or_default()
            )
        }
    }
    EXIT_OK
}

/// Runs the benchmark suite (each scenario in temporary directories; no
/// configured database is touched), or one round of one scenario.
fn run_bench(args: &BenchArgs, json: bool) -> i32 {
    let options = crate::bench::Options {
        quick: args.quick,
        rounds: args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
        peers: args.peers.clone(),
        pg: args.pg.clone(),
    };
    if let Some(scenario) = args.round {
        let Some(runtime) = runtime() else {
            return EXIT_ERROR;
        };
        return match runtime.block_on(crate::bench::round(scenario, &options)) {
            Ok(round) => {
                println!("{}", serde_json::to_string(&round).unwrap_or_default());
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: bench {}: {}", scenario.name(), one_line(&e));
                EXIT_ERROR
            }
        };
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find this program to run the rounds: {e}");
            return EXIT_ERROR;
        }
    };
    match crate::bench::run(&exe, &args.scenarios, &options) {
        Ok(report) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            EXIT_OK
        }
        Ok(report) => {
            print!("{}", crate::bench::table(&report));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: bench failed: {}", one_line(&e));
            EXIT_ERROR
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// `--db`, or the default database in the data directory.
fn location(db: Option<&str>) -> anyhow::Result<String> {
    match db {
        Some(db) => Ok(db.to_string()),
        None => Ok(default_sqlite_path()
            .ok_or_else(|| anyhow!("no home directory to keep the database in: pass --db PATH"))?
            .display()
            .to_string()),
    }
}

/// Opens the database at `location`: an existing one at this binary's
/// schema, or, when `may_create`, a new one, said on stderr.
async fn open_store(location: &str, may_create: bool) -> anyhow::Result<Store> {
    if !may_create {
        return Ok(Store::open(location).await?);
    }
    let (store, created) = Store::open_or_create(location).await?;
    if created {
        eprintln!(
            "created a new prodops database at {} (schema version {})",
            store.location(),
            Store::binary_schema_version(store.backend())
        );
    }
    Ok(store)
}

/// True when the command may make the database it names: the default one in
/// the data directory, the demo's, or the first `user add` (README's first step).
fn may_create(cli: &Cli) -> bool {
    cli.db.is_none()
        || matches!(
            cli.command,
            Some(Command::Demo { .. } | Command::User(UserCmd::Add { .. }))
        )
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let db = match (&cli.command, &cli.db) {
        (Some(Command::Demo { .. }), None) => {
            Some(demo::demo_dir()?.join("demo.db").display().to_string())
        }
        (_, db) => db.clone(),
    };
    let location = location(db.as_deref())?;
    let out = output::Printer { json: cli.json };
    if let Some(Command::Db(cmd)) = cli.command {
        return db::run(cmd, &location, &out).await;
    }
    let store = open_store(&location, may_create(&cli)).await?;
    let ops = match &cli.as_user {
        Some(user) => Ops::impersonate(store, Actor::from_os(), user).await?,
        None => Ops::new(store, Actor::from_os()),
    };
    let (config, _) = crate::config::load(cli.worker.config.as_deref())?;
    let ops = ops.with_policies(config.policies());
    let result = match cli.command {
        Some(Command::Demo {
            setup_only,
            batch,
            pace,
            worker,
        }) => {
            let run = demo::DemoRun {
                headless: setup_only || batch,
                setup_only,
                pace,
            };
            demo::demo(&ops, &out, &worker, &cli.console, run).await
        }
        Some(Command::Check) => run_checks(&ops, &out, &cli.worker).await,
        Some(command) => dispatch(&ops, &out, command).await,
        None if cli.batch => match cli.worker.worker(&ops).await {
            Ok(w) => {
                let mode = worker::BatchMode {
                    once: cli.once,
                    wait: cli.wait,
                };
                worker::run_batch(&w, mode).await
            }
            Err(e) => Err(e),
        },
        None => console(&ops, &cli.worker, &cli.console, None).await,
    };
    ops.store().close().await;
    result
}

async fn dispatch(ops: &Ops, out: &output::Printer, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Request(cmd) => request(ops, out, cmd).await,
        Command::Approve { id, reason } => out.request(&ops.approve(id, &reason).await?),
        Command::Reject { id, reason } => out.request(&ops.reject(id, &reason).await?),
        Command::Consolidate {
            target,
            others,
            reason,
        } => out.request(&ops.consolidate(target, &others, &reason).await?),
        Command::Priority { id, value } => out.request(&ops.set_priority(id, value).await?),
        Command::Hold(h) => hold(ops, out, &h).await,
        Command::Release(t) => match t.split()? {
            Ok(id) => out.request(&ops.release(id, &t.reason).await?),
            Err(jobs) => out.jobs_requested(&ops.release_jobs(&jobs, &t.reason).await?),
        },
        Command::Remove { jobs, reason } => {
            out.jobs_requested(&ops.remove_jobs(&jobs, &reason).await?)
        }
        Command::Cancel(c) => out.request(&ops.cancel(c.id, &c.reason).await?),
        Command::Campaign(CampaignCmd::List(args)) => {
            let mut filter = list_filter(&args)?;
            if filter.states.is_empty() {
                filter.states = campaign_states();
            }
            out.requests(&ops.request_lines(&filter).await?)
        }
        Command::Campaign(CampaignCmd::Show { id }) => out.campaign(&ops.campaign(id).await?),
        Command::History { entity } => out.history(&ops.history(entity).await?),
        Command::User(cmd) => user(ops, out, cmd).await,
        Command::Experiment(cmd) => experiment(ops, out, cmd).await,
        Command::Resubmit { scope, reason } => {
            out.resubmitted(&ops.resubmit(scope, &reason).await?)
        }
        Command::Signoff { subtask, reason } => {
            ops.signoff(subtask, &reason).await?;
            eprintln!("{subtask} signed off; the worker judges it on its next pass");
            Ok(())
        }
        Command::Jobs {
            campaign,
            states,
            limit,
            offset,
        } => out.jobs(&ops.jobs(campaign, &states, limit, offset).await?),
        Command::Job { id } => out.job(&ops.job(id).await?),
        Command::Demo { .. }
        | Command::JobRun { .. }
        | Command::LocalExecutor { .. }
        | Command::Config(_)
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Check
        | Command::Db(_)
        | Command::Bench(_) => {
            unreachable!("dispatched before")
        }
    }
}

/// `prodops hold`: a campaign with its scope (saying what it does), or jobs.
async fn hold(ops: &Ops, out: &output::Printer, args: &HoldArgs) -> anyhow::Result<()> {
    let reason = &args.targets.reason;
    let id = match args.targets.split()? {
        Ok(id) => id,
        Err(_) if args.running => {
            return Err(anyhow!(
                "--running is for a campaign; a job is held whatever it is doing"
            ))
        }
        Err(jobs) => return out.jobs_requested(&ops.hold_jobs(&jobs, reason).await?),
    };
    let scope = if args.running {
        HoldScope::Running
    } else {
        HoldScope::Queued
    };
    out.request(&ops.hold_with_scope(id, scope, reason).await?)?;
    eprintln!("{id} held: {}", scope.describe());
    if scope == HoldScope::Running {
        for (backend, effect) in ops.running_hold_effects(id).await? {
            eprintln!("  {backend}: {effect}");
        }
    }
    Ok(())
}

/// `prodops check`: every configured check now, recorded like the worker's runs.
async fn run_checks(
    ops: &Ops,
    out: &output::Printer,
    args: &worker::WorkerArgs,
) -> anyhow::Result<()> {
    let worker = args.worker(ops).await?;
    let verdicts = worker.run_checks_now().await?;
    let unreachable = worker.unreachable_jobs().await?;
    if verdicts.is_empty() {
        eprintln!("no checks configured: add [[check]] sections to the configuration file (see `prodops config show`)");
    }
    out.checks(&verdicts, &unreachable)?;
    let failing = verdicts.iter().filter(|(_, v)| !v.ok).count();
    if failing > 0 {
        anyhow::bail!("{failing} of {} checks failing", verdicts.len());
    }
    if !unreachable.is_empty() {
        anyhow::bail!("{}", worker::unreachable_jobs(&unreachable));
    }
    Ok(())
}

async fn request(ops: &Ops, out: &output::Printer, cmd: RequestCmd) -> anyhow::Result<()> {
    match cmd {
        RequestCmd::New { file } => out.request(&ops.request_new(&file).await?),
        RequestCmd::List(args) => out.requests(&ops.request_lines(&list_filter(&args)?).await?),
        RequestCmd::Show { id, toml: true } => {
            print!(
                "{}",
                crate::ops::views::request_toml(&ops.request(id).await?)?
            );
            Ok(())
        }
        RequestCmd::Show { id, toml: false } => out.request(&ops.request(id).await?),
        RequestCmd::Clone { id, title } => {
            out.request(&ops.request_clone(id, title.as_deref()).await?)
        }
        RequestCmd::Edit { id, path, file } => match path.or(file) {
            Some(file) if file.as_os_str() == "-" => out.request(&edit_from_stdin(ops, id).await?),
            Some(file) => out.request(&ops.request_edit(id, &file).await?),
            None => match edit::edit_in_editor(ops, id).await? {
                edit::Edited::Saved(detail) => out.request(&detail),
                edit::Edited::Unchanged => {
                    eprintln!("edit cancelled: nothing changed");
                    Ok(())
                }
            },
        },
    }
}

/// `request edit ID --file -`: the request file from stdin, scripts relative to here.
async fn edit_from_stdin(
    ops: &Ops,
    id: CampaignId,
) -> anyhow::Result<crate::ops::views::RequestDetail> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).context("cannot read stdin")?;
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let request = ops.read_request(&bytes, "stdin", &here)?;
    Ok(ops.request_edit_with(id, &request).await?)
}

fn campaign_states() -> Vec<String> {
    [
        CampaignState::Approved,
        CampaignState::Running,
        CampaignState::Held,
        CampaignState::Succeeded,
        CampaignState::Failed,
    ]
    .iter()
    .map(|s| s.as_str().to_string())
    .collect()
}

fn list_filter(args: &ListArgs) -> anyhow::Result<CampaignFilter> {
    for s in &args.states {
        if CampaignState::parse(s).is_none() {
            let all: Vec<&str> = CampaignState::ALL.iter().map(|s| s.as_str()).collect();
            return Err(anyhow!(
                "--state: unknown state `{s}`; use one of {}",
                all.join(", ")
            ));
        }
    }
    let states = if args.pending {
        vec![CampaignState::PendingApproval.as_str().to_string()]
    } else if args.completed {
        CampaignState::ALL
            .iter()
            .filter(|s| s.is_terminal() || **s == CampaignState::Failed)
            .map(|s| s.as_str().to_string())
            .collect()
    } else {
        args.states.clone()
    };
    Ok(CampaignFilter {
        states,
        experiment: args.experiment.clone(),
        limit: args.limit,
    })
}

async fn user(ops: &Ops, out: &output::Printer, cmd: UserCmd) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Add {
            name,
            role,
            experiment,
            kind,
            dn,
            token_subject,
        } => {
            let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow!(
                    "--role: unknown role `{role}`; use one of {}",
                    all.join(", ")
                )
            })?;
            let kind = kind.as_deref().map(parse_kind).transpose()?;
            let grant = Grant {
                role,
                experiment,
                kind,
            };
            let user = ops
                .user_add(&name, &grant, dn.as_deref(), token_subject.as_deref())
                .await?;
            out.users(std::slice::from_ref(&user))
        }
        UserCmd::List => out.users(&ops.users().await?),
    }
}

fn parse_kind(s: &str) -> anyhow::Result<TaskKind> {
    let all: Vec<&str> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
    TaskKind::parse(s.trim())
        .ok_or_else(|| anyhow!("unknown kind `{s}`; use one of {}", all.join(", ")))
}

async fn experiment(ops: &Ops, out: &output::Printer, cmd: ExperimentCmd) -> anyhow::Result<()> {
    match cmd {
        ExperimentCmd::Add { name, auto_approve } => {
            let kinds = auto_approve
                .iter()
                .filter(|k| !k.trim().is_empty())
                .map(|k| parse_kind(k).context("--auto-approve"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let e = ops.experiment_add(&name, &kinds).await?;
            out.experiments(std::slice::from_ref(&e))
        }
        ExperimentCmd::List => out.experiments(&ops.experiments().await?),
    }
}

/// Opens the console on `ops`'s database, with the worker in-process unless `--no-worker`.
async fn console(
    ops: &Ops,
    worker_args: &worker::WorkerArgs,
    args: &ConsoleArgs,
    select: Option<CampaignId>,
) -> anyhow::Result<()> {
    let worker = if args.no_worker {
        None
    } else {
        Some(std::sync::Arc::new(worker_args.worker(ops).await?))
    };
    let options = crate::tui::Options {
        keymap: args.keymap.clone(),
        theme: args.theme.clone(),
        readonly: args.readonly,
        database: ops.store().location().to_string(),
        select,
    };
    crate::tui::run(ops.clone(), worker, options).await
}
