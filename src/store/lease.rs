//! The worker lease: one worker at a time submits; the others only watch (S3).
//!
//! The lease is a row with a holder and an expiry, taken with a compare-and-set,
//! renewed every pass, and taken over when it expires or its holder's process
//! on this host is gone.

use super::{Store, StoreError};
use crate::clock::now_ms;
use crate::host::hostname;
use serde::Serialize;
use sqlx::Row;

const NAME: &str = "worker";

/// Who holds the lease: `host:pid:start.n`, `n` counting the workers of
/// this process (two started in the same millisecond are still two).
pub fn holder_id() -> String {
    static WORKERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WORKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}:{}:{}.{n}", hostname(), std::process::id(), now_ms())
}

/// True when `holder` names a process on this host that no longer exists.
fn holder_is_gone(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks whether the process exists.
    host == hostname()
        && pid > 0
        && unsafe { libc::kill(pid, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Takes or renews the lease for `ttl_ms`; false when another live worker holds it.
pub async fn acquire(store: &Store, holder: &str, ttl_ms: i64) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    let now = now_ms();
    let current = sqlx::query("SELECT holder, expires_at FROM leases WHERE name = $1")
        .bind(NAME)
        .fetch_optional(&mut *tx)
        .await?;
    let taken = match current {
        None => {
            sqlx::query("INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                .bind(NAME)
                .bind(holder)
                .bind(now + ttl_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1
        }
        Some(row) => {
            let other: String = row.try_get(0)?;
            let expires: i64 = row.try_get(1)?;
            if other == holder || expires < now || holder_is_gone(&other) {
                sqlx::query("UPDATE leases SET holder = $1, expires_at = $2 WHERE name = $3 AND holder = $4")
                    .bind(holder)
                    .bind(now + ttl_ms)
                    .bind(NAME)
                    .bind(&other)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1
            } else {
                false
            }
        }
    };
    tx.commit().await?;
    Ok(taken)
}

/// Gives the lease up so another worker may start at once.
pub async fn release(store: &Store, holder: &str) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(NAME)
        .bind(holder)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The worker holding the lease: where it runs, so an operator whose
/// console only watches knows which process submits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseHolder {
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// When that worker started (ms since the epoch).
    pub since_ms: i64,
}

impl LeaseHolder {
    /// Reads a holder written by [`holder_id`] (`host:pid:start.n`).
    pub fn parse(holder: &str) -> Option<LeaseHolder> {
        let mut parts = holder.rsplitn(3, ':');
        let (start, pid, host) = (parts.next()?, parts.next()?, parts.next()?);
        let since = start.split('.').next()?;
        Some(LeaseHolder {
            host: host.to_string(),
            pid: pid.parse().ok()?,
            since_ms: since.parse().ok()?,
        })
    }
}

impl std::fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} pid {}", self.host, self.pid)
    }
}

/// The worker holding the lease now, if one does and it has not expired.
pub async fn holder(store: &Store) -> Result<Option<LeaseHolder>, StoreError> {
    Ok(current_holder(store)
        .await?
        .as_deref()
        .and_then(LeaseHolder::parse))
}

/// The current holder, if the lease is held and not expired.
pub async fn current_holder(store: &Store) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT holder, expires_at FROM leases WHERE name = $1")
        .bind(NAME)
        .fetch_optional(store.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let expires: i64 = row.try_get(1)?;
    Ok((expires >= now_ms()).then(|| row.try_get(0)).transpose()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_a_holder_reads_back_as_host_and_pid() {
        let me = LeaseHolder::parse(&holder_id()).unwrap();
        assert_eq!((me.host, me.pid), (hostname(), std::process::id()));
        assert_eq!(
            LeaseHolder::parse("node7.fnal.gov:4242:1700000000000"),
            Some(LeaseHolder {
                host: "node7.fnal.gov".into(),
                pid: 4242,
                since_ms: 1700000000000
            })
        );
        assert_eq!(LeaseHolder::parse("garbage"), None);
    }
}
