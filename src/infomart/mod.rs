//! Info Mart: is the ETL cycle complete, so that a delete in UCS cannot run ahead of it?
//!
//! Genesys' procedure says to make sure the Info Mart ETL cycle is complete before deleting
//! data in UCS. The `infomart/etl-complete` check reads Info Mart's own control tables on
//! PostgreSQL, read-only (`src/infomart/sql.rs` holds every statement and lists the tables and
//! columns), into an [`EtlStatus`]; [`verdict`] then decides for a contact from the end of its
//! latest interaction. Anything that prevents confirming (the database unreachable, a table or column
//! missing or of another type, no rows) is an [`EtlError`]: the planner turns it into a blocker,
//! never into a pass.
//!
//! ```no_run
//! # async fn example(environment: &ucs_gdpr::environment::Environment, end: jiff::Timestamp) {
//! use ucs_gdpr::infomart::{InfoMartTarget, verdict};
//! match InfoMartTarget::from_environment(environment, "".as_ref()) {
//!     Ok(None) => { /* not configured: a note, or a blocker under `requireChecks` */ }
//!     Err(error) => { /* a blocker: `error` says why the cycle cannot be confirmed */ }
//!     Ok(Some(target)) => match target.read_status().await {
//!         Err(error) => { /* a blocker */ }
//!         Ok(status) => {
//!             let decision = verdict(&status, Some(end));
//!             if !decision.allows_deletes() { /* a blocker: `decision` says why */ }
//!         }
//!     },
//! }
//! # }
//! ```
//!
//! Nothing here prints or logs; the check sees timestamps, job names and statuses only.

mod sql;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, NoTls};

use crate::environment::{DsnError, Environment, InfoMart, Timeouts};

/// What Info Mart's control tables say about the ETL cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtlStatus {
    /// How far Interaction Server data has been extracted.
    pub high_water_mark: HighWaterMark,
    /// The latest ETL job run.
    pub latest_job: LatestJob,
}

/// The extraction high-water mark for Interaction Server data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HighWaterMark {
    /// Everything up to this instant has been extracted.
    pub at: Timestamp,
    /// Which column it was read from.
    pub source: MarkSource,
}

/// Where a high-water mark came from, so the plan can say how it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkSource {
    /// `CTL_EXTRACT_HISTORY.MAX_TS`: UTC seconds since 1970 (what Info Mart documents).
    MaxTsUtcSeconds,
    /// `CTL_EXTRACT_HISTORY.MAX_TIME` as a `timestamptz`: an instant.
    MaxTimeWithTimeZone,
    /// `CTL_EXTRACT_HISTORY.MAX_TIME` as a `timestamp`, read in the configured server zone.
    MaxTimeInServerZone,
}

impl MarkSource {
    /// The column, as a plan shows it.
    pub fn column(self) -> &'static str {
        match self {
            MarkSource::MaxTsUtcSeconds => "CTL_EXTRACT_HISTORY.MAX_TS",
            MarkSource::MaxTimeWithTimeZone => "CTL_EXTRACT_HISTORY.MAX_TIME",
            MarkSource::MaxTimeInServerZone => {
                "CTL_EXTRACT_HISTORY.MAX_TIME (in the server's time zone)"
            }
        }
    }
}

/// The latest ETL job run in `CTL_ETL_HISTORY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestJob {
    /// `JOB_ID`: the run's id.
    pub id: String,
    /// `JOB_NAME`, such as `Job_ExtractICON`.
    pub name: String,
    /// `STATUS`, classified.
    pub state: JobState,
    /// `CREATED_TS`: when its row was written.
    pub finished_at: Timestamp,
}

/// A job's `STATUS`, classified. Only a status known to mean success lets deletes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// `COMPLETE`, `COMPLETED`, `SUCCESS`, `SUCCEEDED`, `SUCCESSFUL`, `FINISHED`, `DONE`, `OK`.
    Succeeded,
    /// `RUNNING`, `IN PROGRESS`, `IN_PROGRESS`, `STARTED`.
    Running,
    /// `FAILED`, `FAILURE`, `ERROR`, `ABORTED`, `CANCELLED`, `CANCELED`.
    Failed,
    /// Anything else (kept as read, at most 64 characters).
    Unrecognised(String),
}

impl JobState {
    /// Classifies a `STATUS` value, case and surrounding blanks aside.
    pub fn from_status(status: &str) -> JobState {
        let normal = status.trim().to_ascii_uppercase();
        match normal.as_str() {
            "COMPLETE" | "COMPLETED" | "SUCCESS" | "SUCCEEDED" | "SUCCESSFUL" | "FINISHED"
            | "DONE" | "OK" => JobState::Succeeded,
            "RUNNING" | "IN PROGRESS" | "IN_PROGRESS" | "STARTED" => JobState::Running,
            "FAILED" | "FAILURE" | "ERROR" | "ABORTED" | "CANCELLED" | "CANCELED" => {
                JobState::Failed
            }
            _ => JobState::Unrecognised(status.trim().chars().take(64).collect()),
        }
    }

    /// Among jobs that ended together, the worst one speaks for them.
    fn severity(&self) -> u8 {
        match self {
            JobState::Succeeded => 0,
            JobState::Running => 1,
            JobState::Unrecognised(_) => 2,
            JobState::Failed => 3,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobState::Succeeded => f.write_str("succeeded"),
            JobState::Running => f.write_str("is still running"),
            JobState::Failed => f.write_str("failed"),
            JobState::Unrecognised(status) => write!(f, "has status `{status}`"),
        }
    }
}

/// The check's decision for one contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtlVerdict {
    /// Info Mart has extracted past the contact's latest interaction, and its latest job
    /// succeeded: deleting cannot take data from under it.
    CaughtUp {
        /// The extraction high-water mark.
        high_water_mark: Timestamp,
    },
    /// Info Mart has not yet extracted up to the end of the contact's latest interaction.
    Behind {
        /// The extraction high-water mark.
        high_water_mark: Timestamp,
        /// When the contact's latest interaction ended.
        latest_interaction_end: Timestamp,
        /// How far the mark is behind it (zero when they are equal: equal is not later).
        by: SignedDuration,
    },
    /// The latest ETL job failed: the cycle is not complete, whatever the mark says.
    LatestJobFailed {
        /// The failed job.
        job: LatestJob,
    },
    /// The latest ETL job is running or has a status this check does not know.
    LatestJobUnconfirmed {
        /// The job.
        job: LatestJob,
    },
}

impl EtlVerdict {
    /// Whether deletes may go ahead: only when Info Mart has caught up.
    pub fn allows_deletes(&self) -> bool {
        matches!(self, EtlVerdict::CaughtUp { .. })
    }
}

impl fmt::Display for EtlVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtlVerdict::CaughtUp { high_water_mark } => write!(
                f,
                "the Info Mart ETL cycle is complete: Interaction Server data extracted up to \
                 {high_water_mark}"
            ),
            EtlVerdict::Behind { high_water_mark, latest_interaction_end, by } => write!(
                f,
                "Info Mart is behind by {by:#}: Interaction Server data extracted up to \
                 {high_water_mark}, the contact's latest interaction ended at \
                 {latest_interaction_end}"
            ),
            EtlVerdict::LatestJobFailed { job } => write!(
                f,
                "the latest Info Mart ETL job failed: {} (run {}) at {}",
                job.name, job.id, job.finished_at
            ),
            EtlVerdict::LatestJobUnconfirmed { job } => write!(
                f,
                "cannot confirm the ETL cycle is complete: the latest Info Mart job {} (run {}) \
                 {}",
                job.name, job.id, job.state
            ),
        }
    }
}

/// Decides for a contact whose latest interaction ended at `latest_interaction_end` (`None`:
/// it has none, so only the job's state matters).
///
/// The mark must be strictly later than the end: records sharing the mark's timestamp may
/// still be in flight. A failed, running or unrecognised latest job blocks whatever the mark.
pub fn verdict(status: &EtlStatus, latest_interaction_end: Option<Timestamp>) -> EtlVerdict {
    let job = &status.latest_job;
    match job.state {
        JobState::Succeeded => {}
        JobState::Failed => return EtlVerdict::LatestJobFailed { job: job.clone() },
        JobState::Running | JobState::Unrecognised(_) => {
            return EtlVerdict::LatestJobUnconfirmed { job: job.clone() };
        }
    }
    let high_water_mark = status.high_water_mark.at;
    match latest_interaction_end {
        Some(end) if high_water_mark <= end => EtlVerdict::Behind {
            high_water_mark,
            latest_interaction_end: end,
            by: end.duration_since(high_water_mark),
        },
        _ => EtlVerdict::CaughtUp { high_water_mark },
    }
}

/// Why the ETL cycle cannot be confirmed complete. Every variant blocks deletes.
///
/// Messages never carry the password or the connection string, only the name of the variable
/// that holds the password, table and column names, and the server's error text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtlError {
    /// The password variable is not set.
    #[error(
        "cannot confirm the ETL cycle is complete: the environment variable `{variable}` that \
         should hold the Info Mart password is not set"
    )]
    MissingPassword {
        /// The variable's name.
        variable: String,
    },
    /// The password variable is set but empty or not UTF-8.
    #[error(
        "cannot confirm the ETL cycle is complete: the environment variable `{variable}` that \
         should hold the Info Mart password is empty or not valid UTF-8"
    )]
    UnusablePassword {
        /// The variable's name.
        variable: String,
    },
    /// The DSN is not a PostgreSQL connection string (its text is not repeated: it may hold a
    /// secret).
    #[error(
        "cannot confirm the ETL cycle is complete: the Info Mart `dsn` is not a valid \
         PostgreSQL connection string (`host=... dbname=... user=...` or a postgresql:// URL)"
    )]
    InvalidDsn,
    /// The DSN lacks something every connection needs (`host`, `user`).
    #[error("cannot confirm the ETL cycle is complete: the Info Mart `dsn` names no `{missing}`")]
    IncompleteDsn {
        /// The missing setting.
        missing: &'static str,
    },
    /// The DSN carries a password: secrets never live in the environments file.
    #[error(
        "cannot confirm the ETL cycle is complete: the Info Mart `dsn` contains a password; \
         remove it and name the variable that holds it in `passwordEnv`"
    )]
    PasswordInDsn,
    /// `serverTimeZone` is not a known time zone.
    #[error(
        "cannot confirm the ETL cycle is complete: the Info Mart `serverTimeZone` \
         `{name}` is not a known time zone"
    )]
    UnknownTimeZone {
        /// The configured name.
        name: String,
    },
    /// TLS could not be set up (the CA file, the platform's roots).
    #[error("cannot confirm the ETL cycle is complete: cannot set up TLS for Info Mart: {reason}")]
    Tls {
        /// Why.
        reason: String,
    },
    /// No connection: refused, unknown host, TLS or authentication failure.
    #[error(
        "cannot confirm the ETL cycle is complete: cannot connect to Info Mart ({target}): {reason}"
    )]
    Unreachable {
        /// Where, without the password.
        target: String,
        /// The client's reason.
        reason: String,
    },
    /// Connecting took longer than the connect timeout.
    #[error(
        "cannot confirm the ETL cycle is complete: Info Mart ({target}) did not answer within \
         {after:?}"
    )]
    ConnectTimeout {
        /// Where, without the password.
        target: String,
        /// The timeout.
        after: Duration,
    },
    /// The check took longer than the query timeout once connected.
    #[error(
        "cannot confirm the ETL cycle is complete: Info Mart's control tables did not answer \
         within {after:?}"
    )]
    QueryTimeout {
        /// The timeout.
        after: Duration,
    },
    /// The server cancelled a statement (its `statement_timeout`).
    #[error(
        "cannot confirm the ETL cycle is complete: Info Mart cancelled the query (statement \
         timeout)"
    )]
    StatementTimeout,
    /// The connection broke during the check.
    #[error("cannot confirm the ETL cycle is complete: the Info Mart connection failed: {reason}")]
    ConnectionLost {
        /// The client's reason.
        reason: String,
    },
    /// A control table does not exist (or is not visible to the user).
    #[error(
        "cannot confirm the ETL cycle is complete: Info Mart has no table `{table}` (is this \
         the Info Mart database, and is the schema on the user's search_path?)"
    )]
    MissingTable {
        /// The table.
        table: &'static str,
    },
    /// A column the check reads does not exist.
    #[error(
        "cannot confirm the ETL cycle is complete: a column is missing from Info Mart's \
         `{table}`: {detail}"
    )]
    MissingColumn {
        /// The table.
        table: &'static str,
        /// The server's words, naming the column.
        detail: String,
    },
    /// A column has a type the check does not read.
    #[error(
        "cannot confirm the ETL cycle is complete: Info Mart's `{table}.{column}` is of type \
         `{found}`, expected {expected}"
    )]
    UnexpectedColumnType {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The PostgreSQL type found.
        found: String,
        /// What the check reads.
        expected: &'static str,
    },
    /// The server rejected a statement because of a column's type.
    #[error(
        "cannot confirm the ETL cycle is complete: Info Mart's `{table}` does not have the \
         expected column types: {detail}"
    )]
    IncompatibleSchema {
        /// The table.
        table: &'static str,
        /// The server's words.
        detail: String,
    },
    /// A value could not be decoded although its column has the expected type.
    #[error(
        "cannot confirm the ETL cycle is complete: Info Mart's `{table}.{column}` could not be \
         decoded"
    )]
    Undecodable {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
    },
    /// A value cannot be a time (such as `infinity`).
    #[error(
        "cannot confirm the ETL cycle is complete: Info Mart's `{table}.{column}` holds a value \
         that is not a usable time"
    )]
    OutOfRange {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
    },
    /// The user may not read a control table.
    #[error(
        "cannot confirm the ETL cycle is complete: the Info Mart user may not read `{table}` \
         (grant it SELECT)"
    )]
    PermissionDenied {
        /// The table.
        table: &'static str,
    },
    /// No Interaction Server extraction has been recorded.
    #[error(
        "cannot confirm the ETL cycle is complete: Info Mart's CTL_EXTRACT_HISTORY has no \
         extraction of Interaction Server data (DATA_SOURCE_TYPE 2)"
    )]
    NoExtraction,
    /// The mark is a local `MAX_TIME` and no `serverTimeZone` says which zone it is in.
    #[error(
        "cannot confirm the ETL cycle is complete: Info Mart's latest extraction has no UTC \
         MAX_TS and its MAX_TIME is a local time; set the Info Mart `serverTimeZone`"
    )]
    LocalTimeWithoutZone,
    /// No ETL job has been recorded.
    #[error(
        "cannot confirm the ETL cycle is complete: Info Mart's CTL_ETL_HISTORY records no ETL job"
    )]
    NoJobHistory,
    /// Any other database error.
    #[error(
        "cannot confirm the ETL cycle is complete: Info Mart answered with an error {code}: {detail}"
    )]
    Database {
        /// The SQLSTATE, when there is one.
        code: String,
        /// The server's words.
        detail: String,
    },
}

/// A resolved Info Mart connection: DSN parsed, password read, timeouts and TLS settled.
///
/// Its `Debug` shows where it connects, never the password.
pub struct InfoMartTarget {
    config: tokio_postgres::Config,
    connect_timeout: Duration,
    query_timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_time_zone: Option<TimeZone>,
}

impl fmt::Debug for InfoMartTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfoMartTarget")
            .field("target", &self.describe())
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl InfoMartTarget {
    /// The environment's Info Mart, with the password from the process environment; `None`
    /// when the environment configures no Info Mart (the planner reports "not configured").
    ///
    /// # Errors
    /// A configuration that cannot be used: see [`InfoMartTarget::resolve`].
    pub fn from_environment(
        environment: &Environment,
        base_dir: &Path,
    ) -> Result<Option<InfoMartTarget>, EtlError> {
        environment
            .infomart
            .as_ref()
            .map(|infomart| {
                Self::resolve(infomart, &environment.timeouts, base_dir, &|name| {
                    std::env::var_os(name)
                })
            })
            .transpose()
    }

    /// Resolves an Info Mart section, reading the password variable through `variables`.
    ///
    /// # Errors
    /// The password variable unset, empty or not UTF-8; the DSN invalid or holding a password;
    /// an unknown `serverTimeZone`; an unreadable `caFile`.
    pub fn resolve(
        infomart: &InfoMart,
        timeouts: &Timeouts,
        base_dir: &Path,
        variables: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<InfoMartTarget, EtlError> {
        let mut config = parse_dsn(&infomart.dsn)?;
        if let Some(variable) = &infomart.password_env {
            let Some(value) = variables(variable) else {
                return Err(EtlError::MissingPassword { variable: variable.clone() });
            };
            match value.into_string() {
                Ok(password) if !password.is_empty() => {
                    config.password(password);
                }
                _ => return Err(EtlError::UnusablePassword { variable: variable.clone() }),
            }
        }
        let connect_timeout =
            Duration::from_millis(infomart.connect_timeout_ms.unwrap_or(timeouts.connect_ms));
        let query_timeout =
            Duration::from_millis(infomart.query_timeout_ms.unwrap_or(timeouts.read_ms));
        config.connect_timeout(connect_timeout);
        config.application_name("ucs-gdpr");
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(Arc::new(tls_config(infomart.ca_file.as_ref().map(|f| base_dir.join(f)))?)),
        };
        let server_time_zone = infomart
            .server_time_zone
            .as_ref()
            .map(|name| {
                TimeZone::get(name).map_err(|_| EtlError::UnknownTimeZone { name: name.clone() })
            })
            .transpose()?;
        Ok(InfoMartTarget { config, connect_timeout, query_timeout, tls, server_time_zone })
    }

    /// Where it connects, for plans and errors: hosts, ports, database and user; never the
    /// password.
    pub fn describe(&self) -> String {
        describe(&self.config)
    }

    /// Reads the ETL status from Info Mart's control tables, in one read-only transaction.
    ///
    /// Needs a Tokio runtime (the connection runs as a task beside the queries).
    ///
    /// # Errors
    /// Anything that prevents confirming the cycle is complete, each a blocker for deletes.
    pub async fn read_status(&self) -> Result<EtlStatus, EtlError> {
        let target = self.describe();
        let connecting = self.connect();
        let (mut client, connection) = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| EtlError::ConnectTimeout {
                target: target.clone(),
                after: self.connect_timeout,
            })?
            .map_err(|error| EtlError::Unreachable { target, reason: connect_reason(&error) })?;
        let reading = tokio::time::timeout(self.query_timeout, self.read(&mut client)).await;
        drop(client);
        connection.abort();
        reading.map_err(|_| EtlError::QueryTimeout { after: self.query_timeout })?
    }

    async fn connect(
        &self,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
        match &self.tls {
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                Ok((client, tokio::spawn(async move { drop(connection.await) })))
            }
            Some(tls) => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls.as_ref().clone());
                let (client, connection) = self.config.connect(tls).await?;
                Ok((client, tokio::spawn(async move { drop(connection.await) })))
            }
        }
    }

    async fn read(&self, client: &mut Client) -> Result<EtlStatus, EtlError> {
        let transaction = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| sql::query_error(&e, None))?;
        transaction
            .batch_execute(&sql::statement_timeout(self.query_timeout.as_millis()))
            .await
            .map_err(|e| sql::query_error(&e, None))?;
        let marks = transaction
            .query(sql::HIGH_WATER_MARK, &[])
            .await
            .map_err(|e| sql::query_error(&e, Some(sql::Table::ExtractHistory)))?;
        let jobs = transaction
            .query(sql::LATEST_JOBS, &[])
            .await
            .map_err(|e| sql::query_error(&e, Some(sql::Table::EtlHistory)))?;
        // Read-only: nothing to commit.
        transaction.rollback().await.map_err(|e| sql::query_error(&e, None))?;
        Ok(EtlStatus {
            high_water_mark: sql::high_water_mark(&marks, self.server_time_zone.as_ref())?,
            latest_job: sql::latest_job(&jobs)?,
        })
    }
}

/// Parses a DSN from the environments file, refusing one that holds a password (the parsing
/// itself belongs to the environments file: [`crate::environment::parse_dsn`]).
///
/// # Errors
/// [`EtlError::InvalidDsn`], [`EtlError::PasswordInDsn`] or [`EtlError::IncompleteDsn`].
pub fn parse_dsn(dsn: &str) -> Result<tokio_postgres::Config, EtlError> {
    crate::environment::parse_dsn(dsn).map_err(|error| match error {
        DsnError::Invalid => EtlError::InvalidDsn,
        DsnError::Password => EtlError::PasswordInDsn,
        DsnError::Incomplete { missing } => EtlError::IncompleteDsn { missing },
    })
}

fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let mut parts = Vec::new();
    if !hosts.is_empty() {
        parts.push(format!("host={}", hosts.join(",")));
    }
    if !ports.is_empty() {
        parts.push(format!("port={}", ports.join(",")));
    }
    if let Some(dbname) = config.get_dbname() {
        parts.push(format!("dbname={dbname}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    parts.join(" ")
}

/// The client's reason for a failed connection, with its cause (such as "Connection refused").
fn connect_reason(error: &tokio_postgres::Error) -> String {
    let mut reason = error.to_string();
    if let Some(source) = std::error::Error::source(error) {
        let source = source.to_string();
        if !reason.contains(&source) {
            reason = format!("{reason}: {source}");
        }
    }
    reason
}

/// A rustls client configuration (ring) that verifies the server against the platform's roots
/// and, when given, the CAs in `ca_file`.
fn tls_config(ca_file: Option<PathBuf>) -> Result<rustls::ClientConfig, EtlError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use rustls_platform_verifier::BuilderVerifierExt;

    let tls_error = |reason: String| EtlError::Tls { reason };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?;
    let builder = match ca_file {
        None => builder.with_platform_verifier().map_err(|e| tls_error(e.to_string()))?,
        Some(path) => {
            let roots = CertificateDer::pem_file_iter(&path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_error(format!("the CA file {}: {e}", path.display())))?;
            let verifier =
                rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider)
                    .map_err(|e| tls_error(e.to_string()))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
        }
    };
    Ok(builder.with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(mark: &str, state: JobState) -> EtlStatus {
        EtlStatus {
            high_water_mark: HighWaterMark {
                at: mark.parse().unwrap(),
                source: MarkSource::MaxTsUtcSeconds,
            },
            latest_job: LatestJob {
                id: "42".into(),
                name: "Job_ExtractICON".into(),
                state,
                finished_at: "2026-11-28T09:05:00Z".parse().unwrap(),
            },
        }
    }

    #[test]
    fn a_mark_later_than_the_latest_interaction_is_caught_up() {
        let status = status("2026-11-28T09:00:00Z", JobState::Succeeded);
        let v = verdict(&status, Some("2026-11-28T08:59:59.999Z".parse().unwrap()));
        assert!(v.allows_deletes(), "{v}");
    }

    #[test]
    fn a_mark_equal_to_the_latest_interaction_end_is_not_enough() {
        let status = status("2026-11-28T09:00:00Z", JobState::Succeeded);
        let v = verdict(&status, Some("2026-11-28T09:00:00Z".parse().unwrap()));
        assert!(matches!(v, EtlVerdict::Behind { by, .. } if by.is_zero()), "{v}");
    }

    #[test]
    fn behind_says_by_how_much() {
        let status = status("2026-11-28T09:00:00Z", JobState::Succeeded);
        let v = verdict(&status, Some("2026-11-28T10:30:00Z".parse().unwrap()));
        assert_eq!(
            v.to_string(),
            "Info Mart is behind by 1h 30m: Interaction Server data extracted up to \
             2026-11-28T09:00:00Z, the contact's latest interaction ended at 2026-11-28T10:30:00Z"
        );
    }

    #[test]
    fn a_failed_or_unknown_job_blocks_even_without_interactions() {
        for state in [JobState::Failed, JobState::Running, JobState::Unrecognised("X".into())] {
            let v = verdict(&status("2026-11-28T09:00:00Z", state), None);
            assert!(!v.allows_deletes(), "{v}");
        }
        assert!(
            verdict(&status("2026-11-28T09:00:00Z", JobState::Succeeded), None).allows_deletes()
        );
    }

    #[test]
    fn statuses_are_classified_case_blind() {
        assert_eq!(JobState::from_status(" complete "), JobState::Succeeded);
        assert_eq!(JobState::from_status("FAILED"), JobState::Failed);
        assert_eq!(JobState::from_status("In Progress"), JobState::Running);
        assert_eq!(JobState::from_status("PAUSED"), JobState::Unrecognised("PAUSED".into()));
    }

    #[test]
    fn a_dsn_with_a_password_is_refused_without_echoing_it() {
        let error = parse_dsn("host=im dbname=gim user=u password=hunter2").unwrap_err();
        assert!(matches!(error, EtlError::PasswordInDsn));
        assert!(!error.to_string().contains("hunter2"));
        let error = parse_dsn("postgresql://u:hunter2@im/gim").unwrap_err();
        assert!(!error.to_string().contains("hunter2"));
        let error = parse_dsn("host='unterminated password=hunter2").unwrap_err();
        assert!(matches!(error, EtlError::InvalidDsn));
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn a_dsn_must_name_a_host_and_a_user() {
        assert!(matches!(
            parse_dsn("dbname=gim user=u"),
            Err(EtlError::IncompleteDsn { missing: "host" })
        ));
        assert!(matches!(
            parse_dsn("host=im dbname=gim"),
            Err(EtlError::IncompleteDsn { missing: "user" })
        ));
        assert!(parse_dsn("postgresql://u@im:5433/gim?sslmode=require").is_ok());
    }
}
