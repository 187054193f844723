//! Many rows in one SQLite statement, `… VALUES (?, ?), (?, ?) …`, kept prepared.
//!
//! diesel prepares a `sql_query` anew every time, and a statement of 500 rows is thousands of
//! placeholders to parse: at 1,000,000 keys that was 12 % of the folder's time, walking its
//! boxed binds 10 % more, and formatting timestamps through chrono's `strftime` 7 %. Here a
//! statement of the full number of rows is prepared once per connection (diesel's cache keys
//! it by its marker type), its values are bound straight from the rows, and timestamps are
//! written by `sqlite_timestamp`.

use chrono::{Datelike, NaiveDateTime, Timelike};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel::sqlite::Sqlite;
use diesel::{QueryResult, RunQueryDsl};
use std::marker::PhantomData;

/// Rows per statement: a second's worth of uses from thousands of clients is a few statements.
pub const ROWS_PER_STATEMENT: usize = 500;

/// A row's values, bound in the order of the statement's columns.
pub trait BindRow {
    fn bind<'b>(&'b self, values: &mut RowValues<'_, '_, 'b>) -> QueryResult<()>;
}

/// The values of one row as they are bound: `(?, ?, …)`.
pub struct RowValues<'p, 'a, 'b> {
    out: &'p mut AstPass<'a, 'b, Sqlite>,
    first: bool,
}

impl<'b> RowValues<'_, '_, 'b> {
    pub fn push<ST, U>(&mut self, value: &'b U) -> QueryResult<&mut Self>
    where
        Sqlite: HasSqlType<ST>,
        U: ToSql<ST, Sqlite>,
    {
        if !self.first {
            self.out.push_sql(", ");
        }
        self.first = false;
        self.out.push_bind_param::<ST, U>(value)?;
        Ok(self)
    }
}

/// A statement around a list of rows: `head`, the rows' values, then `tail`.
pub struct RowsSql {
    head: &'static str,
    tail: &'static str,
}

impl RowsSql {
    pub const fn new(head: &'static str, tail: &'static str) -> Self {
        RowsSql { head, tail }
    }
}

/// One statement over some rows; `S` names the statement, for diesel's cache of prepared ones.
pub struct Rows<'a, S, R> {
    sql: &'a RowsSql,
    rows: &'a [R],
    statement: PhantomData<S>,
}

impl<'a, S, R: BindRow> Rows<'a, S, R> {
    /// At most `ROWS_PER_STATEMENT` rows.
    pub fn new(sql: &'a RowsSql, rows: &'a [R]) -> Self {
        debug_assert!(rows.len() <= ROWS_PER_STATEMENT);
        Rows { sql, rows, statement: PhantomData }
    }
}

/// Runs the statement `S` over all of `rows`, `ROWS_PER_STATEMENT` at a time.
pub fn execute_all<S: 'static, R: BindRow>(
    conn: &mut diesel::SqliteConnection,
    sql: &RowsSql,
    rows: &[R],
) -> QueryResult<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        Rows::<S, R>::new(sql, chunk).execute(conn)?;
    }
    Ok(())
}

impl<S: 'static, R> QueryId for Rows<'_, S, R> {
    type QueryId = S;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<S, R: BindRow> QueryFragment<Sqlite> for Rows<'_, S, R> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        // Only the full statement is kept: the text of a shorter one differs with its length,
        // while the cache knows the statement by `S` alone.
        if self.rows.len() != ROWS_PER_STATEMENT {
            out.unsafe_to_cache_prepared();
        }
        out.push_sql(self.sql.head);
        for (n, row) in self.rows.iter().enumerate() {
            out.push_sql(if n == 0 { "(" } else { ", (" });
            row.bind(&mut RowValues { out: &mut out, first: true })?;
            out.push_sql(")");
        }
        out.push_sql(self.sql.tail);
        Ok(())
    }
}

impl<S, R> Query for Rows<'_, S, R> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<S, R, Conn> RunQueryDsl<Conn> for Rows<'_, S, R> {}

/// A time as diesel writes a `Timestamp` to SQLite (chrono's `%F %T%.f`: the fraction with 3,
/// 6 or 9 digits as needed, none when whole), without parsing a format on every value. Times
/// are compared as text in SQL (`MIN`, `MAX`, `<`), so the two must agree to the byte.
pub fn sqlite_timestamp(at: NaiveDateTime) -> String {
    let nanos = at.nanosecond();
    if !(0..=9999).contains(&at.year()) || nanos >= 1_000_000_000 {
        return at.format("%F %T%.f").to_string();
    }
    let mut out = String::with_capacity(26);
    for (separator, n, width) in [
        ("", at.year() as u32, 4),
        ("-", at.month(), 2),
        ("-", at.day(), 2),
        (" ", at.hour(), 2),
        (":", at.minute(), 2),
        (":", at.second(), 2),
    ] {
        out.push_str(separator);
        push_digits(&mut out, n, width);
    }
    if nanos != 0 {
        out.push('.');
        if nanos % 1_000_000 == 0 {
            push_digits(&mut out, nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            push_digits(&mut out, nanos / 1_000, 6);
        } else {
            push_digits(&mut out, nanos, 9);
        }
    }
    out
}

/// `n` in `width` decimal digits, zero-padded.
fn push_digits(out: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u32.pow(place) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn timestamps_are_written_exactly_as_diesel_writes_them() {
        let mut rng = rand::rng();
        let at = |secs: i64, nanos: u32| chrono::DateTime::from_timestamp(secs, nanos).unwrap().naive_utc();
        let mut times = vec![at(0, 0), at(-62_167_219_200, 0), at(253_402_300_799, 999_999_999), at(1, 1_000)];
        for _ in 0..20_000 {
            let secs = rng.random_range(-62_167_219_200..253_402_300_800);
            let nanos = match rng.random_range(0..4) {
                0 => 0,
                1 => rng.random_range(0..1_000) * 1_000_000,
                2 => rng.random_range(0..1_000_000) * 1_000,
                _ => rng.random_range(0..1_000_000_000),
            };
            times.push(at(secs, nanos));
        }
        for t in times {
            assert_eq!(sqlite_timestamp(t), t.format("%F %T%.f").to_string());
        }
    }

    struct Pair(i64, String);

    impl BindRow for Pair {
        fn bind<'b>(&'b self, values: &mut RowValues<'_, '_, 'b>) -> QueryResult<()> {
            values.push::<diesel::sql_types::BigInt, _>(&self.0)?.push::<diesel::sql_types::Text, _>(&self.1)?;
            Ok(())
        }
    }

    #[test]
    fn rows_are_bound_in_order_and_only_a_full_statement_is_kept_prepared() {
        static SQL: RowsSql = RowsSql::new("INSERT INTO t (a, b) VALUES ", " ON CONFLICT DO NOTHING");
        let rows = vec![Pair(1, "one".into()), Pair(2, "two".into())];
        let statement = Rows::<(), _>::new(&SQL, &rows);
        assert_eq!(
            diesel::debug_query::<Sqlite, _>(&statement).to_string(),
            r#"INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING -- binds: [1, "one", 2, "two"]"#
        );
        let backend = Sqlite;
        assert!(!statement.is_safe_to_cache_prepared(&backend).unwrap());
        let full: Vec<Pair> = (0..ROWS_PER_STATEMENT as i64).map(|n| Pair(n, n.to_string())).collect();
        assert!(Rows::<(), _>::new(&SQL, &full).is_safe_to_cache_prepared(&backend).unwrap());
    }
}
