//! Batched statements with one fixed shape: a list of ids or rows travels as
//! one JSON parameter, unpacked by the database (`json_each` in SQLite,
//! `json_array_elements` in PostgreSQL).
//!
//! Why: a statement whose text changes with the number of rows is prepared
//! anew each time, and SQLite looks `$N` parameters up one by one (the cost
//! grows with the square of their number). One parameter and one text per
//! statement keeps every batched write of the worker a cached statement.

use serde::Serialize;
use sqlx::AnyConnection;

/// The SQL that differs between the two databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The SQL type a column of a JSON row is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    /// A 64-bit integer (ids, times, counts, flags).
    Int,
    /// Text.
    Text,
}

impl Dialect {
    /// The dialect of the database behind `conn`.
    pub(crate) fn of(conn: &AnyConnection) -> Dialect {
        if conn.backend_name() == "PostgreSQL" {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        }
    }

    /// A subquery with one column `value`: the ids in parameter `$n` (a JSON array).
    pub(crate) fn ids(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("SELECT value FROM json_each(${n})"),
            Dialect::Postgres => {
                format!("SELECT value::bigint AS value FROM json_array_elements_text(${n}::json)")
            }
        }
    }

    /// A subquery with columns `c0`, `c1`, …: the rows in parameter `$n` (a
    /// JSON array of arrays, see [`json`]), each column read as `columns[i]`.
    pub(crate) fn rows(self, n: usize, columns: &[Col]) -> String {
        let picked: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, col)| match (self, col) {
                (Dialect::Sqlite, _) => format!("value ->> {i} AS c{i}"),
                (Dialect::Postgres, Col::Int) => format!("(value->>{i})::bigint AS c{i}"),
                (Dialect::Postgres, Col::Text) => format!("(value->>{i}) AS c{i}"),
            })
            .collect();
        match self {
            Dialect::Sqlite => format!("SELECT {} FROM json_each(${n})", picked.join(", ")),
            Dialect::Postgres => format!(
                "SELECT {} FROM json_array_elements(${n}::json)",
                picked.join(", ")
            ),
        }
    }
}

impl Dialect {
    /// The join from a [`Dialect::rows`] subquery to a table, reading the
    /// rows first and the table by key: SQLite would otherwise scan the
    /// table by another index and the rows once per table row.
    pub(crate) fn join_rows_first(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CROSS JOIN",
            Dialect::Postgres => "JOIN",
        }
    }
}

/// The JSON parameter of [`Dialect::ids`] and [`Dialect::rows`] (rows as
/// tuples or arrays of their columns).
pub(crate) fn json(values: &impl Serialize) -> String {
    serde_json::to_string(values).expect("ids and rows serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    #[tokio::test]
    async fn ids_and_rows_unpack_a_json_parameter_in_sqlite() {
        let store = crate::store::Store::create("sqlite::memory:")
            .await
            .unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        let dialect = Dialect::of(&conn);
        assert_eq!(dialect, Dialect::Sqlite);
        let sum: i64 = sqlx::query_scalar(&format!("SELECT SUM(value) FROM ({})", dialect.ids(1)))
            .bind(json(&[1_i64, 2, 40]))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(sum, 43);
        let rows = sqlx::query(&format!(
            "SELECT c0, c1 FROM ({}) AS v ORDER BY c0",
            dialect.rows(1, &[Col::Int, Col::Text])
        ))
        .bind(json(&[(2_i64, Some("b\"quoted\"")), (1, None::<&str>)]))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let read: Vec<(i64, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(read, [(1, None), (2, Some("b\"quoted\"".into()))]);
    }
}
