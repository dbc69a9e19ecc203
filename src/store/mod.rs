//! The database: one API over SQLite (the embedded default) and PostgreSQL
//! (the shared deployment), with migrations embedded. Opening never makes a
//! database or changes its schema: [`Store::create`] makes one and
//! [`Store::migrate_to_current`] upgrades one (`prodops db init|migrate`).
//!
//! Every state change goes through [`states`] (`set_state`, or
//! `move_states` for many entities); no other code writes a state column.

pub mod audit;
pub mod campaigns;
pub mod checks;
pub mod directory;
pub mod files;
pub mod jobs;
pub mod lease;
mod open;
pub mod overview;
pub mod queue;
pub mod scope;
pub mod scripts;
pub mod seed;
pub(crate) mod sql;
pub mod stages;
pub mod states;

pub use open::Schema;
use open::{Intent, Target};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A transaction on either database, on a pooled connection (`'static`) or
/// on one the caller holds.
pub type Tx<'c> = sqlx::Transaction<'c, Any>;

/// A connection for a series of reads or transactions (the worker holds one
/// for a whole pass: taking one from the pool costs more than most statements).
pub type Conn = sqlx::AnyConnection;

/// A connection taken from the store's pool, given back when dropped.
pub type PooledConn = sqlx::pool::PoolConnection<Any>;

/// Rolls `tx` back: nothing it wrote stays (for reads that needed a
/// consistent view, and for checks that must not write).
pub async fn rollback(tx: Tx<'_>) -> Result<(), StoreError> {
    Ok(tx.rollback().await?)
}

/// Commits `tx`: what it wrote becomes visible at once, or nothing does.
pub async fn commit(tx: Tx<'_>) -> Result<(), StoreError> {
    Ok(tx.commit().await?)
}

/// What can go wrong talking to the database. Every message is one line
/// that names the cause once (no inner error repeated after it).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("database: {0}")]
    Db(String),
    /// The connection went away while working (a server restart, a network cut).
    #[error("lost the database connection: {0}")]
    Lost(String),
    /// A migration failed.
    #[error("database migration: {0}")]
    Migrate(String),
    /// The database URL or path cannot be used.
    #[error("database location `{0}`: {1}")]
    Location(String, String),
    /// No database where one was named: a typo must not start a new installation.
    #[error("no prodops database at {0} ({1}): `prodops db init {0}` creates one")]
    Missing(String, String),
    /// An empty file where a database was named.
    #[error("{0} is an empty file, not a prodops database: `prodops db init {0}` makes one")]
    EmptyFile(String),
    /// A file or database that is not prodops's.
    #[error("{0} is not a prodops database: {1}")]
    Foreign(String, String),
    /// A database with no prodops schema yet (a new PostgreSQL database or schema).
    #[error("{0} holds no prodops schema yet: `prodops db init` makes one")]
    Uninitialised(String),
    /// A prodops database where a new one was to be made.
    #[error("{0} is already a prodops database (schema version {1})")]
    Exists(String, i64),
    /// The SQLite file is damaged.
    #[error("database {0} is damaged ({1}): see `prodops db check`, and restore a backup")]
    Damaged(String, String),
    /// The database cannot be written by this user.
    #[error("database {0} is read-only: {1}")]
    ReadOnly(String, String),
    /// The PostgreSQL server cannot be reached.
    #[error("cannot reach PostgreSQL at {0}: {1}")]
    Unreachable(String, String),
    /// The PostgreSQL server refused the user's credentials.
    #[error("PostgreSQL at {0}: authentication failed for user `{1}` (check the password in the URL, PGPASSWORD or ~/.pgpass)")]
    AuthFailed(String, String),
    /// The PostgreSQL server has no such database.
    #[error("PostgreSQL at {0}: database `{1}` does not exist (create it with `createdb {1}`, then `prodops db init URL`)")]
    NoDatabase(String, String),
    /// The schema is older than this binary's: another node upgraded first, or nobody migrated yet.
    #[error("the database's schema is version {db}, older than this prodops's {binary}: run `prodops db migrate` once every node that uses it runs this prodops")]
    SchemaOlder {
        /// The database's schema version.
        db: i64,
        /// This binary's.
        binary: i64,
    },
    /// The schema is newer than this binary's: this node was not upgraded.
    #[error("the database's schema is version {db}, newer than this prodops's {binary}: upgrade prodops on this node")]
    SchemaNewer {
        /// The database's schema version.
        db: i64,
        /// This binary's.
        binary: i64,
    },
    /// Something that should exist does not.
    #[error("{0} does not exist")]
    NotFound(String),
    /// Another writer changed the row first; nothing was written.
    #[error("{0}")]
    Conflict(String),
    /// The table of a state machine refused the change; nothing was written.
    #[error(transparent)]
    Illegal(#[from] crate::model::state::IllegalTransition),
    /// A stored value could not be read back.
    #[error("stored {0} is unreadable: {1}")]
    Corrupt(String, String),
}

impl StoreError {
    /// True when the database could not be reached (or went away): the
    /// worker and the console retry these instead of giving up.
    pub fn is_connection(&self) -> bool {
        matches!(self, StoreError::Lost(_) | StoreError::Unreachable(..))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::Database(d) => {
                let code = d.code().map(|c| c.into_owned());
                let message = open::one_line(d.message());
                if open::sqlite_code(code.as_deref()).is_some_and(|c| c == 11 || c == 26) {
                    return StoreError::Db(format!(
                        "the file is damaged ({message}): see `prodops db check`"
                    ));
                }
                match code.as_deref() {
                    Some(c) if c.starts_with("08") || c.starts_with("57P") => {
                        StoreError::Lost(message)
                    }
                    _ => StoreError::Db(message),
                }
            }
            E::Io(io) => StoreError::Lost(open::one_line(&io.to_string())),
            E::PoolTimedOut => StoreError::Lost(
                "no connection could be made in time (the server is down, or every connection is busy)"
                    .into(),
            ),
            E::PoolClosed | E::WorkerCrashed => StoreError::Lost(open::one_line(&e.to_string())),
            E::Migrate(m) => StoreError::from(*m),
            other => StoreError::Db(open::one_line(&other.to_string())),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        use sqlx::migrate::MigrateError as M;
        match e {
            M::Execute(inner) | M::ExecuteMigration(inner, _) => match StoreError::from(inner) {
                StoreError::Db(m) => StoreError::Migrate(m),
                other => other,
            },
            other => StoreError::Migrate(open::one_line(&other.to_string())),
        }
    }
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded file database.
    Sqlite,
    /// Shared server.
    Postgres,
}

/// The handle every part of prodops uses to reach the database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    location: String,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The default database: `prodops.db` in the platform data directory.
pub fn default_sqlite_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "prodops", "prodops")
        .map(|d| d.data_dir().join("prodops.db"))
}

impl Store {
    /// Opens the existing prodops database at `location` (a `postgres://` URL,
    /// an `sqlite:` URL or a file path), whose schema must be this binary's;
    /// anything else is a typed error naming its cause, within two seconds.
    pub async fn open(location: &str) -> Result<Store, StoreError> {
        let target = Target::parse(location)?;
        let (store, schema) = Store::connect(&target, Intent::Existing).await?;
        match schema {
            Schema::Version(v) => store.refuse_other_version(v).map(|()| store),
            Schema::Blank => Err(StoreError::Uninitialised(target.shown())),
            Schema::Foreign(tables) => Err(foreign_tables(&target, &tables)),
        }
    }

    /// Makes a new prodops database at `location`: a missing SQLite file (and
    /// its folder), an empty one, or a PostgreSQL database or schema without
    /// prodops tables. An existing prodops database is [`StoreError::Exists`].
    pub async fn create(location: &str) -> Result<Store, StoreError> {
        let target = Target::parse(location)?;
        let (store, schema) = Store::connect(&target, Intent::Create).await?;
        match schema {
            Schema::Blank => store.migrate().await.map(|()| store),
            Schema::Version(v) => Err(StoreError::Exists(target.shown(), v)),
            Schema::Foreign(tables) => Err(foreign_tables(&target, &tables)),
        }
    }

    /// Opens the database at `location`, making it first when there is none
    /// (the default data directory, the demo's, a first `user add`); true
    /// when it was made, so the caller can say so.
    pub async fn open_or_create(location: &str) -> Result<(Store, bool), StoreError> {
        match Store::open(location).await {
            Err(StoreError::Missing(..) | StoreError::Uninitialised(_)) => {
                Ok((Store::create(location).await?, true))
            }
            other => other.map(|store| (store, false)),
        }
    }

    /// Opens the existing database at `location` and applies this binary's
    /// pending migrations (`prodops db migrate`); returns the schema version
    /// it had. A schema newer than this binary's is refused untouched.
    pub async fn migrate_to_current(location: &str) -> Result<(Store, i64), StoreError> {
        let (store, before) = Store::inspect(location).await?;
        let before = match before {
            Schema::Version(v) => v,
            Schema::Blank => return Err(StoreError::Uninitialised(store.location.clone())),
            Schema::Foreign(tables) => {
                return Err(foreign_tables(&Target::parse(location)?, &tables))
            }
        };
        let binary = Store::binary_schema_version(store.backend);
        if before > binary {
            return Err(StoreError::SchemaNewer { db: before, binary });
        }
        store.migrate().await?;
        Ok((store, before))
    }

    /// Opens the existing database at `location` whatever its schema, for
    /// `prodops db check` and `db migrate`: nothing is read but the schema version.
    pub async fn inspect(location: &str) -> Result<(Store, Schema), StoreError> {
        Store::connect(&Target::parse(location)?, Intent::Existing).await
    }

    /// The schema version this binary was built for (its last migration).
    pub fn binary_schema_version(backend: Backend) -> i64 {
        migrator(backend)
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0)
    }

    /// The database's schema version now (`None`: no prodops schema).
    pub async fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(match open::schema(&mut conn, self.backend).await? {
            Schema::Version(v) => Some(v),
            Schema::Blank | Schema::Foreign(_) => None,
        })
    }

    /// SQLite's `PRAGMA integrity_check`: `ok`, or the problems it found (at
    /// most 100). On PostgreSQL, which checks its own pages, `ok` once it answers.
    pub async fn integrity_problems(&self) -> Result<Vec<String>, StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            return Ok(Vec::new());
        }
        let lines: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check(100)")
            .fetch_all(&self.pool)
            .await?;
        Ok(lines.into_iter().filter(|l| l != "ok").collect())
    }

    /// Copies the SQLite database, as of one moment, to the new file `to`
    /// while others keep working on it (`VACUUM INTO`: a consistent,
    /// compacted copy). PostgreSQL has `pg_dump` for this.
    pub async fn backup_to(&self, to: &Path) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            return Err(StoreError::Location(
                self.location.clone(),
                "`db backup` copies SQLite files: back PostgreSQL up with pg_dump".into(),
            ));
        }
        if to.exists() {
            return Err(StoreError::Location(
                to.display().to_string(),
                "exists already: give a new file name (a backup never overwrites)".into(),
            ));
        }
        sqlx::query("VACUUM INTO $1")
            .bind(to.display().to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Connects to `target` as `intent` allows: a probe connection first, so
    /// its failure is named (not a pool timing out), then the pool.
    async fn connect(target: &Target, intent: Intent) -> Result<(Store, Schema), StoreError> {
        sqlx::any::install_default_drivers();
        target.precheck(intent)?;
        let mut probe = target.connect_once(intent).await?;
        let backend = target.backend();
        let schema = open::schema(&mut probe, backend)
            .await
            .map_err(|e| target.connect_error(e))?;
        open::close(probe).await;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .test_before_acquire(backend != Backend::Sqlite)
            .acquire_timeout(match backend {
                Backend::Sqlite => Duration::from_secs(30),
                Backend::Postgres => Duration::from_secs(5),
            })
            .after_connect(move |conn, _| Box::pin(open::prepare(conn, backend)))
            .connect_lazy(&target.url(intent))
            .map_err(|e| target.connect_error(e))?;
        let store = Store {
            pool,
            backend,
            location: target.shown(),
        };
        Ok((store, schema))
    }

    fn refuse_other_version(&self, db: i64) -> Result<(), StoreError> {
        let binary = Store::binary_schema_version(self.backend);
        match db.cmp(&binary) {
            std::cmp::Ordering::Less => Err(StoreError::SchemaOlder { db, binary }),
            std::cmp::Ordering::Greater => Err(StoreError::SchemaNewer { db, binary }),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        migrator(self.backend).run(&self.pool).await?;
        Ok(())
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`) so concurrent writers queue instead of failing.
    pub async fn begin(&self) -> Result<Tx<'static>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Starts a write transaction, as [`Store::begin`] does, on a connection
    /// the caller holds (the worker holds one for a whole pass: taking one
    /// from the pool costs more than most statements).
    pub async fn begin_on<'c>(&self, conn: &'c mut AnyConnection) -> Result<Tx<'c>, StoreError> {
        use sqlx::Connection;
        Ok(match self.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        })
    }

    /// A connection from the pool.
    pub async fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    /// The pool, for reads outside a transaction.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the database is, with any password removed.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The migrations applied so far, as `(version, description)`.
    pub async fn applied_migrations(&self) -> Result<Vec<(i64, String)>, StoreError> {
        let rows: Vec<AnyRow> =
            sqlx::query("SELECT version, description FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&self.pool)
                .await?;
        use sqlx::Row;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn migrator(backend: Backend) -> &'static sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    }
}

fn foreign_tables(target: &Target, tables: &[String]) -> StoreError {
    let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
    let more = if tables.len() > 5 { ", …" } else { "" };
    StoreError::Foreign(
        target.shown(),
        format!(
            "an SQLite database of another program (tables {}{more})",
            shown.join(", ")
        ),
    )
}

/// Removes a password from a database URL so it can be shown or logged (CP1).
pub fn redact(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => location.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp1_passwords_are_redacted_from_locations() {
        assert_eq!(
            redact("postgres://prod:s3cret@db:5432/x"),
            "postgres://prod:***@db:5432/x"
        );
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
        assert_eq!(redact("/tmp/a.db"), "/tmp/a.db");
    }
}
