//! Every statement the Info Mart check sends, and how their answers are decoded.
//!
//! # What is read
//!
//! Two control tables, nothing else (the database user needs `SELECT` on these two and no
//! more), inside `BEGIN READ ONLY` with a `SET LOCAL statement_timeout`:
//!
//! | table | columns | for |
//! |---|---|---|
//! | `CTL_EXTRACT_HISTORY` | `MAX_TS`, `MAX_TIME`; `DATA_SOURCE_TYPE` in the filter (= 2) | the extraction high-water mark of Interaction Server data |
//! | `CTL_ETL_HISTORY` | `JOB_ID`, `JOB_NAME`, `STATUS`, `CREATED_TS` | the latest ETL job and whether it failed |
//!
//! # What Info Mart documents, and what is assumed
//!
//! - `CTL_EXTRACT_HISTORY` (Genesys Info Mart 8.5 physical data model for PostgreSQL): one row
//!   per IDB table per extraction cycle; `DATA_SOURCE_TYPE integer` (1 T-Server,
//!   **2 Interaction Server**, 3 OCS, 4 Configuration Server); `MAX_TIME timestamp(3)`, the
//!   highest timestamp extracted, *in the Info Mart server's time zone*; `MAX_TS integer`, the
//!   same instant as UTC seconds since 1970. The mark is the greatest over all Interaction
//!   Server rows. `MAX_TS` is preferred (it is unambiguous); `MAX_TIME` is used when `MAX_TS` is
//!   null, as an instant when the column is a `timestamptz`, and in the configured
//!   `serverTimeZone` when it is a plain `timestamp` (without one: cannot confirm).
//! - `CTL_ETL_HISTORY`: Genesys documents that Info Mart records its ETL jobs' runs there, a
//!   row after each job completes, and that `STATUS` is `FAILED` when any part of the job
//!   failed; the public pages do not list its columns. Assumed, like the other `CTL_` tables:
//!   `JOB_ID varchar(64)`, `JOB_NAME varchar(32)`, `STATUS varchar`, `CREATED_TS integer` (UTC
//!   seconds). The latest job is every row with the greatest `CREATED_TS` (several jobs may end
//!   in the same second; the worst state among them counts).
//! - Identifiers are unquoted: Info Mart's PostgreSQL scripts create them unquoted, so the
//!   server folds them to lower case, and so do these statements.
//!
//! Any deviation (a missing table or column, another column type, no rows) is an error that
//! blocks deletes: a check that cannot confirm never passes.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, Type};

use super::{EtlError, HighWaterMark, JobState, LatestJob, MarkSource};

/// The extraction high-water mark for Interaction Server data: the row with the greatest mark.
pub(super) const HIGH_WATER_MARK: &str = "\
SELECT MAX_TS, MAX_TIME
FROM CTL_EXTRACT_HISTORY
WHERE DATA_SOURCE_TYPE = 2 AND (MAX_TS IS NOT NULL OR MAX_TIME IS NOT NULL)
ORDER BY MAX_TS DESC NULLS LAST, MAX_TIME DESC NULLS LAST
LIMIT 1";

/// The latest ETL job runs: every row with the greatest `CREATED_TS`.
pub(super) const LATEST_JOBS: &str = "\
SELECT JOB_ID, JOB_NAME, STATUS, CREATED_TS
FROM CTL_ETL_HISTORY
WHERE CREATED_TS = (SELECT max(CREATED_TS) FROM CTL_ETL_HISTORY)
LIMIT 100";

/// Bounds the session: the server cancels any statement that runs longer.
pub(super) fn statement_timeout(milliseconds: u128) -> String {
    format!("SET LOCAL statement_timeout = {milliseconds}")
}

/// A table the check reads, as Info Mart's documentation names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    ExtractHistory,
    EtlHistory,
}

impl Table {
    pub(super) fn name(self) -> &'static str {
        match self {
            Table::ExtractHistory => "CTL_EXTRACT_HISTORY",
            Table::EtlHistory => "CTL_ETL_HISTORY",
        }
    }
}

/// A failed statement as the error the planner shows: schema problems by name, the server's
/// own words otherwise (control tables hold no personal data, so neither do their errors).
pub(super) fn query_error(error: &tokio_postgres::Error, table: Option<Table>) -> EtlError {
    let Some(db) = error.as_db_error() else {
        return EtlError::ConnectionLost { reason: error.to_string() };
    };
    let table_name = table.map_or("", Table::name);
    let code = db.code();
    if *code == SqlState::UNDEFINED_TABLE {
        EtlError::MissingTable { table: table_name }
    } else if *code == SqlState::UNDEFINED_COLUMN {
        EtlError::MissingColumn { table: table_name, detail: db.message().to_owned() }
    } else if *code == SqlState::UNDEFINED_FUNCTION || *code == SqlState::DATATYPE_MISMATCH {
        EtlError::IncompatibleSchema { table: table_name, detail: db.message().to_owned() }
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        EtlError::PermissionDenied { table: table_name }
    } else if *code == SqlState::QUERY_CANCELED {
        EtlError::StatementTimeout
    } else {
        EtlError::Database { code: code.code().to_owned(), detail: db.message().to_owned() }
    }
}

/// The high-water mark from the [`HIGH_WATER_MARK`] row.
pub(super) fn high_water_mark(
    rows: &[Row],
    server_time_zone: Option<&TimeZone>,
) -> Result<HighWaterMark, EtlError> {
    let table = Table::ExtractHistory;
    let Some(row) = rows.first() else { return Err(EtlError::NoExtraction) };
    let max_ts = integer(row, table, "MAX_TS")?;
    let max_time = time(row, table, "MAX_TIME")?;
    if let Some(seconds) = max_ts {
        let at = Timestamp::from_second(seconds).map_err(|_| out_of_range(table, "MAX_TS"))?;
        return Ok(HighWaterMark { at, source: MarkSource::MaxTsUtcSeconds });
    }
    match max_time {
        Some(PgTime::Instant(at)) => {
            Ok(HighWaterMark { at, source: MarkSource::MaxTimeWithTimeZone })
        }
        Some(PgTime::Local(civil)) => {
            let Some(zone) = server_time_zone else { return Err(EtlError::LocalTimeWithoutZone) };
            // In a DST fold the earlier reading: an ambiguous mark must never pass early.
            let at = zone
                .to_ambiguous_timestamp(civil)
                .earlier()
                .map_err(|_| out_of_range(table, "MAX_TIME"))?;
            Ok(HighWaterMark { at, source: MarkSource::MaxTimeInServerZone })
        }
        // The statement filters these out; an answer without either is not a mark.
        None => Err(EtlError::NoExtraction),
    }
}

/// The latest job from the [`LATEST_JOBS`] rows: the worst state among them.
pub(super) fn latest_job(rows: &[Row]) -> Result<LatestJob, EtlError> {
    let table = Table::EtlHistory;
    let mut latest: Option<LatestJob> = None;
    for row in rows {
        let id = text(row, table, "JOB_ID")?.unwrap_or_default();
        let name = text(row, table, "JOB_NAME")?.unwrap_or_default();
        let status = text(row, table, "STATUS")?.unwrap_or_default();
        let Some(created) = integer(row, table, "CREATED_TS")? else { continue };
        let finished_at =
            Timestamp::from_second(created).map_err(|_| out_of_range(table, "CREATED_TS"))?;
        let job = LatestJob { id, name, state: JobState::from_status(&status), finished_at };
        if latest.as_ref().is_none_or(|kept| job.state.severity() > kept.state.severity()) {
            latest = Some(job);
        }
    }
    latest.ok_or(EtlError::NoJobHistory)
}

/// A time column's value: an instant (`timestamptz`) or a wall-clock reading (`timestamp`).
enum PgTime {
    Instant(Timestamp),
    Local(jiff::civil::DateTime),
}

/// PostgreSQL's binary `timestamp`/`timestamptz`: microseconds since 2000-01-01 00:00.
struct PgMicros(i64);

impl<'a> FromSql<'a> for PgMicros {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        Ok(PgMicros(i64::from_be_bytes(bytes)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMP || *ty == Type::TIMESTAMPTZ
    }
}

/// 2000-01-01T00:00:00Z, PostgreSQL's epoch, in microseconds since 1970.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

fn column_type<'r>(row: &'r Row, table: Table, column: &'static str) -> Result<&'r Type, EtlError> {
    let wanted = column.to_ascii_lowercase();
    row.columns().iter().find(|c| c.name() == wanted).map(tokio_postgres::Column::type_).ok_or(
        EtlError::MissingColumn {
            table: table.name(),
            detail: format!("column \"{wanted}\" is not in the answer"),
        },
    )
}

fn unexpected(table: Table, column: &'static str, ty: &Type, expected: &'static str) -> EtlError {
    EtlError::UnexpectedColumnType {
        table: table.name(),
        column,
        found: ty.name().to_owned(),
        expected,
    }
}

fn out_of_range(table: Table, column: &'static str) -> EtlError {
    EtlError::OutOfRange { table: table.name(), column }
}

fn decode<'r, T: FromSql<'r>>(
    row: &'r Row,
    table: Table,
    column: &'static str,
) -> Result<Option<T>, EtlError> {
    row.try_get::<_, Option<T>>(column.to_ascii_lowercase().as_str())
        .map_err(|_| EtlError::Undecodable { table: table.name(), column })
}

/// An integer column (`smallint`, `integer` or `bigint`).
fn integer(row: &Row, table: Table, column: &'static str) -> Result<Option<i64>, EtlError> {
    let ty = column_type(row, table, column)?;
    if *ty == Type::INT8 {
        decode::<i64>(row, table, column)
    } else if *ty == Type::INT4 {
        Ok(decode::<i32>(row, table, column)?.map(i64::from))
    } else if *ty == Type::INT2 {
        Ok(decode::<i16>(row, table, column)?.map(i64::from))
    } else {
        Err(unexpected(table, column, ty, "an integer (seconds since 1970, UTC)"))
    }
}

/// A text column (`varchar`, `text`, `char`), cut to a sane length and free of control
/// characters so that it can be shown as it is.
fn text(row: &Row, table: Table, column: &'static str) -> Result<Option<String>, EtlError> {
    let ty = column_type(row, table, column)?;
    if !<String as FromSql<'_>>::accepts(ty) {
        return Err(unexpected(table, column, ty, "text (varchar)"));
    }
    Ok(decode::<String>(row, table, column)?
        .map(|value| value.trim().chars().filter(|c| !c.is_control()).take(64).collect::<String>()))
}

/// A `timestamp` or `timestamptz` column.
fn time(row: &Row, table: Table, column: &'static str) -> Result<Option<PgTime>, EtlError> {
    let ty = column_type(row, table, column)?;
    if !PgMicros::accepts(ty) {
        return Err(unexpected(table, column, ty, "a timestamp"));
    }
    let Some(PgMicros(micros)) = decode::<PgMicros>(row, table, column)? else {
        return Ok(None);
    };
    // `infinity` and `-infinity` are i64::MAX and i64::MIN: not a mark.
    let unix = micros.checked_add(PG_EPOCH_UNIX_MICROS).ok_or(out_of_range(table, column))?;
    let reading = Timestamp::from_microsecond(unix).map_err(|_| out_of_range(table, column))?;
    Ok(Some(if *ty == Type::TIMESTAMPTZ {
        PgTime::Instant(reading)
    } else {
        PgTime::Local(reading.to_zoned_datetime(TimeZone::UTC).datetime())
    }))
}
