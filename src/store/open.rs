//! Opening a database: a missing, foreign, empty, damaged, read-only or
//! unreachable one is told apart in one line within two seconds (instead of
//! a pool timing out after thirty), and a schema of another version is
//! refused before anything reads or writes it.

use super::{redact, Backend, StoreError};
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, Connection, Executor};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// How long opening waits for the database to answer: the whole command
/// must fail within two seconds when nothing is there.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// What a `--db` value names, with what its messages call it.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// An SQLite file, by path (or `sqlite://` URL).
    SqliteFile {
        /// The file.
        path: PathBuf,
    },
    /// An SQLite URL used as given (`sqlite::memory:`).
    SqliteUrl(String),
    /// A PostgreSQL server.
    Postgres {
        /// The URL as given.
        url: String,
        /// `host:port`, for messages.
        server: String,
        /// The user connecting.
        user: String,
        /// The database asked for.
        database: String,
    },
}

/// Whether opening may make a new database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intent {
    /// Only an existing one.
    Existing,
    /// A new one (a missing SQLite file is created, parent folders too).
    Create,
}

impl Target {
    /// Reads a `--db` value: a `postgres://` URL, an `sqlite:` URL or a path.
    pub(crate) fn parse(location: &str) -> Result<Target, StoreError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            return postgres_target(location);
        }
        if location == "sqlite::memory:" || location.starts_with("sqlite::memory:?") {
            return Ok(Target::SqliteUrl(location.to_string()));
        }
        if let Some(rest) = location.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            return Ok(Target::SqliteFile { path: path.into() });
        }
        if location.contains("://") {
            return Err(StoreError::Location(
                redact(location),
                "unsupported scheme: use postgres://… or a file path for SQLite".into(),
            ));
        }
        if location.trim().is_empty() {
            return Err(StoreError::Location(
                location.into(),
                "empty: give a file path or a postgres:// URL".into(),
            ));
        }
        Ok(Target::SqliteFile {
            path: location.into(),
        })
    }

    /// Which database this is.
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Target::Postgres { .. } => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }

    /// What messages call it (no password).
    pub(crate) fn shown(&self) -> String {
        match self {
            Target::SqliteFile { path } => path.display().to_string(),
            Target::SqliteUrl(url) => url.clone(),
            Target::Postgres { url, .. } => redact(url),
        }
    }

    /// The URL sqlx connects to; SQLite files are created only with `Intent::Create`.
    pub(crate) fn url(&self, intent: Intent) -> String {
        match (self, intent) {
            (Target::SqliteFile { path }, Intent::Existing) => {
                format!("sqlite://{}?mode=rw", path.display())
            }
            (Target::SqliteFile { path }, Intent::Create) => {
                format!("sqlite://{}?mode=rwc", path.display())
            }
            (Target::SqliteUrl(url), _) | (Target::Postgres { url, .. }, _) => url.clone(),
        }
    }

    /// Checks, before connecting, that what is named can be what `intent` needs.
    pub(crate) fn precheck(&self, intent: Intent) -> Result<(), StoreError> {
        let Target::SqliteFile { path } = self else {
            return Ok(());
        };
        match (std::fs::metadata(path), intent) {
            (Err(e), Intent::Existing) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::Missing(self.shown(), missing_hint(path)))
            }
            (Err(e), Intent::Create) if e.kind() == std::io::ErrorKind::NotFound => {
                create_parent(path)
            }
            (Err(e), _) => Err(StoreError::Location(self.shown(), e.to_string())),
            (Ok(meta), _) if meta.is_dir() => Err(StoreError::Foreign(
                self.shown(),
                "it is a directory (give a file inside it)".into(),
            )),
            (Ok(meta), Intent::Existing) if meta.len() == 0 => {
                Err(StoreError::EmptyFile(self.shown()))
            }
            (Ok(meta), _) if meta.len() == 0 => writable(path, &self.shown()),
            (Ok(_), _) => {
                inspect_sqlite_file(path, &self.shown())?;
                writable(path, &self.shown())
            }
        }
    }

    /// One connection, or the reason there is none, within [`CONNECT_TIMEOUT`].
    pub(crate) async fn connect_once(&self, intent: Intent) -> Result<AnyConnection, StoreError> {
        let options = AnyConnectOptions::from_str(&self.url(intent))
            .map_err(|e| StoreError::Location(self.shown(), one_line(&e.to_string())))?;
        let backend = self.backend();
        let attempt = async {
            let mut conn = options.connect().await?;
            prepare(&mut conn, backend).await?;
            Ok::<_, sqlx::Error>(conn)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.connect_error(e)),
            Err(_) => Err(self.no_answer()),
        }
    }

    /// The error of a connection that did not answer in time.
    pub(crate) fn no_answer(&self) -> StoreError {
        let wait = CONNECT_TIMEOUT.as_secs_f64();
        match self {
            Target::Postgres { server, .. } => {
                StoreError::Unreachable(server.clone(), format!("no answer within {wait} s"))
            }
            _ => StoreError::Db(format!(
                "{} did not open within {wait} s (locked by another process?)",
                self.shown()
            )),
        }
    }

    /// Names what went wrong connecting, in one line.
    pub(crate) fn connect_error(&self, e: sqlx::Error) -> StoreError {
        match (self, &e) {
            (Target::Postgres { server, .. }, sqlx::Error::Io(io)) => {
                StoreError::Unreachable(server.clone(), io_cause(io))
            }
            (Target::Postgres { server, .. }, sqlx::Error::PoolTimedOut) => {
                StoreError::Unreachable(server.clone(), "no connection free or possible".into())
            }
            (
                Target::Postgres {
                    server,
                    user,
                    database,
                    ..
                },
                sqlx::Error::Database(d),
            ) => match d.code().as_deref() {
                Some("28P01" | "28000") => StoreError::AuthFailed(server.clone(), user.clone()),
                Some("3D000") => StoreError::NoDatabase(server.clone(), database.clone()),
                Some(code) if code.starts_with("08") || code.starts_with("57P") => {
                    StoreError::Unreachable(server.clone(), one_line(d.message()))
                }
                _ => StoreError::from(e),
            },
            (Target::SqliteFile { .. }, sqlx::Error::Database(d)) => {
                match sqlite_code(d.code().as_deref()) {
                    Some(11 | 26) => StoreError::Damaged(self.shown(), one_line(d.message())),
                    Some(8) => StoreError::ReadOnly(self.shown(), one_line(d.message())),
                    _ => StoreError::from(e),
                }
            }
            _ => StoreError::from(e),
        }
    }
}

/// The settings every connection gets: on SQLite, WAL (readers never wait
/// for the writer), foreign keys, and waiting up to 10 s for the write lock.
pub(crate) async fn prepare(conn: &mut AnyConnection, backend: Backend) -> Result<(), sqlx::Error> {
    if backend == Backend::Sqlite {
        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA mmap_size = 268435456;")
            .await?;
    }
    Ok(())
}

/// What a database holds, as far as prodops is concerned (what `open` decides on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// A prodops schema at this version (the last migration applied).
    Version(i64),
    /// Nothing yet: a new SQLite file, or a PostgreSQL database or schema without prodops tables.
    Blank,
    /// An SQLite database of another program, with these tables.
    Foreign(Vec<String>),
}

/// Reads which schema `conn` holds.
pub(crate) async fn schema(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<Schema, sqlx::Error> {
    let has_migrations = match backend {
        Backend::Sqlite => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .fetch_all(&mut *conn)
            .await?;
            if tables.is_empty() {
                return Ok(Schema::Blank);
            }
            if !tables.iter().any(|t| t == "_sqlx_migrations") {
                return Ok(Schema::Foreign(tables));
            }
            true
        }
        Backend::Postgres => {
            let found: Option<String> =
                sqlx::query_scalar("SELECT CAST(to_regclass('_sqlx_migrations') AS TEXT)")
                    .fetch_one(&mut *conn)
                    .await?;
            found.is_some()
        }
    };
    if !has_migrations {
        return Ok(Schema::Blank);
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *conn)
            .await?;
    Ok(version.map_or(Schema::Blank, Schema::Version))
}

/// Closes a probing connection, ignoring a failure to say goodbye.
pub(crate) async fn close(conn: AnyConnection) {
    let _ = conn.close().await;
}

fn postgres_target(location: &str) -> Result<Target, StoreError> {
    let options = sqlx::postgres::PgConnectOptions::from_str(location)
        .map_err(|e| StoreError::Location(redact(location), one_line(&e.to_string())))?;
    let server = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let user = options.get_username().to_string();
    Ok(Target::Postgres {
        url: location.to_string(),
        database: options
            .get_database()
            .map(str::to_string)
            .unwrap_or_else(|| user.clone()),
        server,
        user,
    })
}

/// Why a missing file is missing: its folder too, or only the file.
fn missing_hint(path: &Path) -> String {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.exists() => format!("directory {} does not exist", dir.display()),
        _ => "no such file".into(),
    }
}

fn create_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Location(dir.display().to_string(), e.to_string())),
        None => Ok(()),
    }
}

/// Refuses a file that is not SQLite (saying what it looks like) or is cut short.
fn inspect_sqlite_file(path: &Path, shown: &str) -> Result<(), StoreError> {
    use std::io::Read;
    let mut head = Vec::with_capacity(100);
    std::fs::File::open(path)
        .and_then(|f| f.take(100).read_to_end(&mut head))
        .map_err(|e| read_error(shown, &e))?;
    if !head.starts_with(SQLITE_MAGIC) {
        return Err(StoreError::Foreign(shown.into(), looks_like(&head)));
    }
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    match expected_len(&head) {
        _ if head.len() < 100 => Err(StoreError::Damaged(
            shown.into(),
            format!("truncated: {len} bytes, shorter than its header"),
        )),
        Some(expected) if len < expected && !has_wal(path) => Err(StoreError::Damaged(
            shown.into(),
            format!("truncated: {len} of {expected} bytes"),
        )),
        _ => Ok(()),
    }
}

/// The file's length its header promises, when the header says so reliably.
fn expected_len(head: &[u8]) -> Option<u64> {
    let be32 = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    if head.len() < 100 || be32(24) != be32(92) {
        return None;
    }
    let page = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    Some(page * u64::from(be32(28))).filter(|n| *n > 0)
}

/// True when a write-ahead log holds pages the main file does not have yet.
fn has_wal(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).is_ok_and(|m| m.len() > 0)
}

/// What a file that is not SQLite looks like, for the message.
fn looks_like(head: &[u8]) -> String {
    match std::str::from_utf8(head) {
        Ok(text) if text.chars().all(|c| !c.is_control() || c.is_whitespace()) => {
            let first = text.lines().next().unwrap_or("").trim();
            let first: String = first.chars().take(40).collect();
            format!("it is a text file (starting `{first}`)")
        }
        _ => format!(
            "it is binary data, not SQLite (starting {})",
            hex::encode(&head[..head.len().min(8)])
        ),
    }
}

/// SQLite writes its `-wal` and `-shm` files beside the database: both the
/// file and its folder must be writable.
fn writable(path: &Path, shown: &str) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if path.exists() && !access_writable(path) {
        return Err(StoreError::ReadOnly(
            shown.into(),
            "the file is not writable by this user".into(),
        ));
    }
    if !access_writable(dir) {
        return Err(StoreError::ReadOnly(
            shown.into(),
            format!(
                "its directory {} is not writable, and SQLite writes its -wal and -shm files there",
                dir.display()
            ),
        ));
    }
    Ok(())
}

fn access_writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

fn read_error(shown: &str, e: &std::io::Error) -> StoreError {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            StoreError::ReadOnly(shown.into(), "not even readable by this user".into())
        }
        _ => StoreError::Location(shown.into(), e.to_string()),
    }
}

/// The cause of a failed network connection, as a person says it.
fn io_cause(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the server running?)".into()
        }
        std::io::ErrorKind::TimedOut => "connection timed out".into(),
        _ => one_line(&e.to_string()),
    }
}

/// SQLite's primary result code from sqlx's extended one.
pub(crate) fn sqlite_code(code: Option<&str>) -> Option<i32> {
    code.and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff)
}

/// A message on one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_is_named_by_host_port_user_and_database_in_messages() {
        let Target::Postgres {
            server,
            user,
            database,
            ..
        } = Target::parse("postgres://prod:pw@db.example:6543/ops").unwrap()
        else {
            panic!("not postgres");
        };
        assert_eq!(
            (server.as_str(), user.as_str(), database.as_str()),
            ("db.example:6543", "prod", "ops")
        );
    }

    #[test]
    fn a_text_file_is_described_by_its_first_line() {
        assert_eq!(
            looks_like(b"[worker]\nslots = 2\n"),
            "it is a text file (starting `[worker]`)"
        );
        assert!(looks_like(&[0x1f, 0x8b, 0, 1]).contains("1f8b0001"));
    }

    #[test]
    fn the_header_promises_page_size_times_page_count() {
        let mut head = vec![0u8; 100];
        head[..16].copy_from_slice(SQLITE_MAGIC);
        head[16..18].copy_from_slice(&4096u16.to_be_bytes());
        head[28..32].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(expected_len(&head), Some(3 * 4096));
        head[24] = 1;
        assert_eq!(expected_len(&head), None, "a stale count is not trusted");
    }
}
