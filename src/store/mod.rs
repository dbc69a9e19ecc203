//! The database: one API over SQLite (the embedded default) and PostgreSQL
//! (the shared deployment), with migrations embedded and applied at open.
//!
//! Every state change goes through [`states`] (`set_state`, or
//! `move_states` for many entities); no other code writes a state column.

pub mod audit;
pub mod campaigns;
pub mod checks;
pub mod directory;
pub mod jobs;
pub mod lease;
pub mod overview;
pub mod queue;
pub mod scripts;
pub(crate) mod sql;
pub mod states;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use std::path::{Path, PathBuf};

/// A transaction on either database, on a pooled connection (`'static`) or
/// on one the caller holds.
pub type Tx<'c> = sqlx::Transaction<'c, Any>;

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no or could not be reached.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL or path cannot be used.
    #[error("database location `{0}`: {1}")]
    Location(String, String),
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

/// Current time in milliseconds since the Unix epoch, the unit of every stored time.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    /// Opens (creating if needed) the database at `location`, a `postgres://` URL,
    /// a `sqlite:` URL or a file path, and applies pending migrations.
    pub async fn open(location: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = normalise_location(location)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .test_before_acquire(backend != Backend::Sqlite)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA mmap_size = 268435456;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let store = Store {
            pool,
            backend,
            location: redact(location),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
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

fn normalise_location(location: &str) -> Result<(String, Backend), StoreError> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        return Ok((location.to_string(), Backend::Postgres));
    }
    if location.starts_with("sqlite:") {
        return Ok((location.to_string(), Backend::Sqlite));
    }
    if location.contains("://") {
        return Err(StoreError::Location(
            redact(location),
            "unsupported scheme: use postgres://… or a file path for SQLite".into(),
        ));
    }
    let path = Path::new(location);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Location(location.to_string(), e.to_string()))?;
    }
    Ok((format!("sqlite://{location}?mode=rwc"), Backend::Sqlite))
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
