//! `prodops db …`: making, upgrading, checking and copying the database.
//! These are the only commands that make a database at a path given by
//! `--db` or change its schema (besides the demo and a first `user add`).

use super::output;
use crate::store::{Backend, Schema, Store, StoreError};
use anyhow::anyhow;
use clap::Subcommand;
use std::path::PathBuf;

/// The `db` subcommands.
#[derive(Debug, Subcommand)]
pub(super) enum DbCmd {
    /// Make a new prodops database at PATH (a file, made with its folder, or a
    /// postgres:// URL to an empty database or schema); default: --db.
    Init {
        /// The file or URL [default: --db, else prodops.db in the data dir].
        #[arg(value_name = "PATH|URL")]
        path: Option<String>,
    },
    /// Upgrade the database's schema to this prodops's (after upgrading every node that uses it).
    Migrate,
    /// Check the database: SQLite's integrity check, or that PostgreSQL answers; and the schema version.
    Check,
    /// Copy the SQLite database to a new FILE while it is in use (a consistent snapshot).
    Backup {
        /// The new file (never overwritten).
        file: PathBuf,
    },
    /// Show where the database is and what it holds.
    Info,
}

/// Runs a `db` subcommand on the database at `location` (`--db` or the default).
pub(super) async fn run(cmd: DbCmd, location: &str, out: &output::Printer) -> anyhow::Result<()> {
    match cmd {
        DbCmd::Init { path } => init(path.as_deref().unwrap_or(location)).await,
        DbCmd::Migrate => migrate(location).await,
        DbCmd::Check => check(location, out).await,
        DbCmd::Backup { file } => backup(location, &file).await,
        DbCmd::Info => {
            let store = Store::open(location).await?;
            let shown = out.db_info(&store).await;
            store.close().await;
            shown
        }
    }
}

/// `db init`: a new database; one already at this schema is left as it is.
async fn init(location: &str) -> anyhow::Result<()> {
    match Store::create(location).await {
        Ok(store) => {
            let version = Store::binary_schema_version(store.backend());
            eprintln!(
                "created a new prodops database at {} (schema version {version})",
                store.location()
            );
            store.close().await;
            Ok(())
        }
        Err(StoreError::Exists(shown, version)) => {
            Store::open(location).await?.close().await;
            eprintln!(
                "{shown} is already a prodops database (schema version {version}): nothing to do"
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `db migrate`: the pending migrations, saying from which version to which.
async fn migrate(location: &str) -> anyhow::Result<()> {
    let (store, before) = Store::migrate_to_current(location).await?;
    let now = Store::binary_schema_version(store.backend());
    if before == now {
        eprintln!(
            "{} is at schema version {now} already: nothing to do",
            store.location()
        );
    } else {
        eprintln!(
            "migrated {} from schema version {before} to {now}",
            store.location()
        );
    }
    store.close().await;
    Ok(())
}

/// `db check`: what is wrong with the database, if anything, and what to do.
async fn check(location: &str, out: &output::Printer) -> anyhow::Result<()> {
    let (store, schema) = match Store::inspect(location).await {
        Ok(opened) => opened,
        Err(StoreError::Damaged(shown, why)) => {
            return Err(anyhow!(
                "database {shown} is damaged ({why}): restore it from a backup (`prodops db backup` makes them)"
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let binary = Store::binary_schema_version(store.backend());
    let problems = match store.integrity_problems().await {
        Ok(problems) => problems,
        Err(e) => vec![e.to_string()],
    };
    let version = match &schema {
        Schema::Version(v) => Some(*v),
        Schema::Blank | Schema::Foreign(_) => None,
    };
    print_check(out, &store, version, binary, &problems)?;
    store.close().await;
    if !problems.is_empty() {
        return Err(anyhow!(
            "database {} is damaged ({} problem(s), first: {}): restore it from a backup (`prodops db backup` makes them)",
            store.location(),
            problems.len(),
            problems[0]
        ));
    }
    match version {
        None => Err(StoreError::Uninitialised(store.location().to_string()).into()),
        Some(v) if v < binary => Err(StoreError::SchemaOlder { db: v, binary }.into()),
        Some(v) if v > binary => Err(StoreError::SchemaNewer { db: v, binary }.into()),
        Some(_) => Ok(()),
    }
}

/// `db backup FILE`: an online copy of an SQLite database, at any schema version.
async fn backup(location: &str, file: &std::path::Path) -> anyhow::Result<()> {
    let (store, schema) = Store::inspect(location).await?;
    if !matches!(schema, Schema::Version(_)) {
        return Err(StoreError::Uninitialised(store.location().to_string()).into());
    }
    store.backup_to(file).await?;
    store.close().await;
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "backed up {} to {} ({size} bytes)",
        store.location(),
        file.display()
    );
    Ok(())
}

/// Prints what `db check` found: where, which schema, and the integrity verdict.
fn print_check(
    out: &output::Printer,
    store: &Store,
    version: Option<i64>,
    binary: i64,
    problems: &[String],
) -> anyhow::Result<()> {
    let backend = match store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    if out.json {
        let report = serde_json::json!({
            "location": store.location(),
            "backend": backend,
            "schema_version": version,
            "binary_schema_version": binary,
            "integrity": if problems.is_empty() { "ok" } else { "damaged" },
            "problems": problems,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("database   {} ({backend})", store.location());
    match version {
        Some(v) => println!("schema     version {v} (this prodops: {binary})"),
        None => println!("schema     none (this prodops: {binary})"),
    }
    match problems {
        [] => println!("integrity  ok"),
        _ => {
            println!("integrity  damaged");
            for p in problems {
                println!("  {p}");
            }
        }
    }
    Ok(())
}
