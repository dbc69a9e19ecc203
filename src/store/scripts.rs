//! Approved script copies and grace periods (issue 15): the content a
//! request's locked spec names by hash, which jobs run instead of the live
//! file, and when an approved campaign may first be split.

use super::{StoreError, Tx};
use crate::clock::now_ms;
use sqlx::{AnyConnection, Row};

/// Keeps `content` as the copy named by `sha256` (its hash); a copy stored
/// before under that name is the same content and stays.
pub async fn store_copy(tx: &mut Tx<'_>, sha256: &str, content: &[u8]) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO script_copies (sha256, content_hex, bytes, stored_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(sha256)
    .bind(hex::encode(content))
    .bind(content.len() as i64)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The copy named by `sha256`, if one was stored.
pub async fn copy_of(
    conn: &mut AnyConnection,
    sha256: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let row = sqlx::query("SELECT content_hex FROM script_copies WHERE sha256 = $1")
        .bind(sha256)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        let text: String = r.try_get(0)?;
        hex::decode(&text)
            .map_err(|e| StoreError::Corrupt(format!("script copy {sha256}"), e.to_string()))
    })
    .transpose()
}

/// Sets (or with `None` clears) when campaign `id` may first be split, ms.
pub async fn set_start_after(tx: &mut Tx<'_>, id: i64, at: Option<i64>) -> Result<(), StoreError> {
    sqlx::query("UPDATE campaigns SET start_after = $1 WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Approved campaigns still in their grace period at `now`: `(id, start_after)`,
/// soonest first.
pub async fn waiting_campaigns(
    conn: &mut AnyConnection,
    now: i64,
) -> Result<Vec<(i64, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, start_after FROM campaigns WHERE state = 'approved' AND start_after > $1
         ORDER BY start_after, id",
    )
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
