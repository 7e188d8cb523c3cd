//! The Info Mart ETL check against a real PostgreSQL: no mocks.
//!
//! The tests share one server. With `UCS_GDPR_TEST_PG` set (a `key=value` DSN of a superuser on
//! a server that asks TCP clients for a password and offers TLS, such as `host=127.0.0.1
//! port=5432 user=postgres password=...`, with `UCS_GDPR_TEST_PG_CA` naming the PEM of the CA
//! that signed its certificate) they use it; otherwise they start a throwaway cluster from the
//! PostgreSQL server binaries on this machine (`openssl` makes a test CA and a server
//! certificate, `initdb` into a temp folder, `pg_ctl start` on a free loopback port with TLS on
//! and the socket in that folder, as the unprivileged `postgres` user when run as root, since
//! `initdb` refuses root). A watchdog shell holds the cluster for as long as this
//! test process lives: when the process ends its pipe closes and the watchdog stops the server
//! and removes the folder. Without server binaries they are installed (`provision`), or the tests fail and say how.
//!
//! Each test gets its own database with Info Mart's control tables as the PostgreSQL physical
//! data model defines them, and connects as a read-only user that must give its password.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use ucs_gdpr::environment::{Environment, InfoMart, Timeouts};
use ucs_gdpr::infomart::{
    EtlError, EtlStatus, EtlVerdict, InfoMartTarget, JobState, MarkSource, verdict,
};

/// The read-only user the check connects as, and its password (a throwaway test value).
const READER: &str = "gdpr_ro";
pub(crate) const READER_PASSWORD: &str = "reader-test-password";
/// The variable the environments file names for that password.
pub(crate) const PASSWORD_VARIABLE: &str = "INFOMART_PASSWORD";

/// The shared server.
struct Server {
    /// A superuser connection string, without `dbname`.
    admin: String,
    /// Where the check connects: `host=... port=...`.
    address: String,
    /// The CA that signed the server's TLS certificate.
    ca_file: Option<PathBuf>,
    /// Holds the watchdog's stdin open while the process lives; dropping it stops the cluster.
    _watchdog: Option<ChildStdin>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(|| match std::env::var("UCS_GDPR_TEST_PG") {
        Ok(dsn) if !dsn.trim().is_empty() => external_server(&dsn),
        _ => throwaway_cluster(),
    })
}

fn external_server(dsn: &str) -> Server {
    let config: tokio_postgres::Config =
        dsn.parse().expect("UCS_GDPR_TEST_PG is not a valid PostgreSQL connection string");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let server = Server {
        admin: dsn.to_owned(),
        address: format!("host={host} port={port}"),
        ca_file: std::env::var_os("UCS_GDPR_TEST_PG_CA").map(PathBuf::from),
        _watchdog: None,
    };
    create_reader(&server.admin);
    server
}

fn output(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(out.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The watchdog: initialises and starts the cluster, says `ready`, waits for its stdin to close
/// (this process ending), then stops the server and removes the folder.
const WATCHDOG: &str = r#"set -e
mkdir "$3/tls" && cd "$3/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ucs-gdpr test CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout ca.key -out ca.crt >"$3/openssl.log" 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr >>"$3/openssl.log" 2>&1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt >>"$3/openssl.log" 2>&1
chmod 600 server.key
cd "$3"
"$1/initdb" -D "$3/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >"$3/initdb.log" 2>&1
"$1/pg_ctl" -D "$3/data" -l "$3/server.log" -w -t 60 -o "-p $2 -k $3 -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on -c ssl_cert_file=$3/tls/server.crt -c ssl_key_file=$3/tls/server.key" start >"$3/pg_ctl.log" 2>&1
echo ready
read -r _ || true
"$1/pg_ctl" -D "$3/data" -m immediate -w stop >/dev/null 2>&1 || true
rm -rf "$3"
"#;

#[allow(
    clippy::zombie_processes,
    reason = "the watchdog must outlive this function: it stops the cluster when the process ends"
)]
fn throwaway_cluster() -> Server {
    let bin = crate::provision::postgres_server_binaries();
    let dir = tempfile::Builder::new().prefix("ucs-gdpr-pg-").tempdir().unwrap().keep();
    let port = free_port();
    let as_root = output(Command::new("id").arg("-u")) == "0";
    let mut command = if as_root {
        // initdb refuses root: the cluster belongs to the unprivileged `postgres` user.
        let uid: u32 = output(Command::new("id").args(["-u", "postgres"])).parse().unwrap();
        let gid: u32 = output(Command::new("id").args(["-g", "postgres"])).parse().unwrap();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", "sh"]);
        command
    } else {
        Command::new("sh")
    };
    command
        .arg("-c")
        .arg(WATCHDOG)
        .arg("sh")
        .arg(&bin)
        .arg(port.to_string())
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    if line.trim() != "ready" {
        let logs: String = ["openssl.log", "initdb.log", "pg_ctl.log", "server.log"]
            .iter()
            .map(|log| {
                let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
                format!("--- {log}\n{text}")
            })
            .collect();
        panic!("the throwaway PostgreSQL cluster in {} did not start:\n{logs}", dir.display());
    }
    let server = Server {
        admin: format!("host={} port={port} user=postgres", dir.display()),
        address: format!("host=127.0.0.1 port={port}"),
        ca_file: Some(dir.join("tls/ca.crt")),
        _watchdog: child.stdin.take(),
    };
    create_reader(&server.admin);
    server
}

/// Runs `sql` as the superuser in `dbname`, on a runtime of its own.
fn admin_execute(admin: &str, dbname: &str, sql: &str) {
    let dsn = format!("{admin} dbname={dbname}");
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect as the superuser: {e}"));
            let connection = tokio::spawn(connection);
            client.batch_execute(&sql).await.unwrap_or_else(|e| {
                panic!("{}: {sql}", e.as_db_error().map_or(e.to_string(), ToString::to_string))
            });
            drop(client);
            let _ = connection.await;
        });
    })
    .join()
    .unwrap();
}

fn create_reader(admin: &str) {
    admin_execute(
        admin,
        "postgres",
        &format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
                 CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}';
               END IF;
             END $$;"
        ),
    );
}

/// Info Mart's control tables as the PostgreSQL physical data model defines them.
/// `CTL_ETL_HISTORY`'s columns beyond those the check reads are assumed.
const EXTRACT_HISTORY: &str = "
CREATE TABLE CTL_EXTRACT_HISTORY (
  TABLE_NAME varchar(255) NOT NULL,
  DATA_SOURCE_KEY integer NOT NULL,
  DATA_SOURCE_TYPE integer,
  ROW_COUNT integer,
  MAX_TIME timestamp(3),
  MAX_TS integer,
  ICON_DBID integer NOT NULL DEFAULT 0,
  DSS_ID integer,
  PROVIDERTAG integer,
  EXTRACT_START_TIME timestamp(3),
  EXTRACT_END_TIME timestamp(3),
  JOB_ID varchar(64) NOT NULL,
  JOB_NAME varchar(32),
  JOB_VERSION varchar(64),
  DAP_NAME varchar(255),
  CREATE_AUDIT_KEY numeric(19) NOT NULL,
  CREATED_TS integer NOT NULL
);";

const ETL_HISTORY: &str = "
CREATE TABLE CTL_ETL_HISTORY (
  JOB_ID varchar(64) NOT NULL,
  JOB_NAME varchar(32),
  JOB_VERSION varchar(64),
  START_TIME timestamp(3),
  END_TIME timestamp(3),
  STATUS varchar(32),
  CREATED_TS integer NOT NULL
);";

/// The Info Mart server's zone in these tests: `MAX_TIME` is written in it.
const SERVER_ZONE: &str = "Europe/Berlin";

/// One extraction row: IDB `table` of `data_source_type`, extracted up to `utc`.
pub(crate) fn extraction(table: &str, data_source_type: i32, utc: &str) -> String {
    format!(
        "INSERT INTO CTL_EXTRACT_HISTORY (TABLE_NAME, DATA_SOURCE_KEY, DATA_SOURCE_TYPE, \
           ROW_COUNT, MAX_TIME, MAX_TS, ICON_DBID, EXTRACT_START_TIME, EXTRACT_END_TIME, JOB_ID, \
           JOB_NAME, JOB_VERSION, DAP_NAME, CREATE_AUDIT_KEY, CREATED_TS)
         VALUES ('{table}', {data_source_type}, {data_source_type}, 120,
           (timestamptz '{utc}' AT TIME ZONE '{SERVER_ZONE}'),
           extract(epoch FROM timestamptz '{utc}')::integer, 1,
           (timestamptz '{utc}' + interval '1 minute') AT TIME ZONE '{SERVER_ZONE}',
           (timestamptz '{utc}' + interval '2 minutes') AT TIME ZONE '{SERVER_ZONE}',
           'e7c1c0de-{data_source_type}', 'Job_ExtractICON', '8.5.116.07', 'IDB_DAP', 1001,
           extract(epoch FROM timestamptz '{utc}' + interval '2 minutes')::integer);"
    )
}

/// One job run that ended at `utc` with `status`.
fn job(id: &str, name: &str, status: &str, utc: &str) -> String {
    format!(
        "INSERT INTO CTL_ETL_HISTORY (JOB_ID, JOB_NAME, JOB_VERSION, START_TIME, END_TIME, \
           STATUS, CREATED_TS)
         VALUES ('{id}', '{name}', '8.5.116.07',
           (timestamptz '{utc}' - interval '3 minutes') AT TIME ZONE '{SERVER_ZONE}',
           timestamptz '{utc}' AT TIME ZONE '{SERVER_ZONE}', '{status}',
           extract(epoch FROM timestamptz '{utc}')::integer);"
    )
}

/// A realistic Info Mart: Interaction Server extracted up to 09:00 UTC, T-Server further (to
/// show only Interaction Server counts), and a history of successful jobs.
pub(crate) fn healthy_info_mart() -> Vec<String> {
    vec![
        EXTRACT_HISTORY.to_owned(),
        ETL_HISTORY.to_owned(),
        extraction("G_IR", 2, "2026-11-28 08:40:00+00"),
        extraction("G_CALL", 2, "2026-11-28 09:00:00+00"),
        extraction("G_PARTY", 2, "2026-11-28 08:55:00+00"),
        extraction("G_CALL", 1, "2026-11-28 11:00:00+00"),
        job("a1", "Job_ExtractICON", "COMPLETE", "2026-11-28 08:50:00+00"),
        job("a2", "Job_TransformGIM", "COMPLETE", "2026-11-28 08:55:00+00"),
        job("a3", "Job_ExtractICON", "COMPLETE", "2026-11-28 09:02:00+00"),
    ]
}

/// A fresh database named `name` holding `statements`, readable by the reader.
pub(crate) fn info_mart(name: &str, statements: &[String]) -> String {
    let server = server();
    // Each its own statement: neither may run inside a transaction block.
    admin_execute(
        &server.admin,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    admin_execute(&server.admin, "postgres", &format!("CREATE DATABASE {name}"));
    let mut sql = statements.join("\n");
    sql.push_str(&format!("\nGRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER};"));
    admin_execute(&server.admin, name, &sql);
    format!("{} dbname={name} user={READER} sslmode=disable", server.address)
}

fn section(dsn: &str) -> InfoMart {
    InfoMart {
        dsn: dsn.to_owned(),
        password_env: Some(PASSWORD_VARIABLE.to_owned()),
        connect_timeout_ms: Some(5_000),
        query_timeout_ms: Some(10_000),
        ca_file: None,
        server_time_zone: None,
    }
}

/// The password variable as the process environment would hold it.
fn variables(name: &str) -> Option<OsString> {
    (name == PASSWORD_VARIABLE).then(|| READER_PASSWORD.into())
}

fn target(infomart: &InfoMart) -> InfoMartTarget {
    InfoMartTarget::resolve(infomart, &Timeouts::default(), Path::new(""), &variables).unwrap()
}

async fn status_of(name: &str, statements: &[String]) -> Result<EtlStatus, EtlError> {
    target(&section(&info_mart(name, statements))).read_status().await
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[tokio::test]
async fn a_caught_up_info_mart_allows_deletes() {
    let status = status_of("etl_caught_up", &healthy_info_mart()).await.unwrap();
    assert_eq!(status.high_water_mark.at, at("2026-11-28T09:00:00Z"));
    assert_eq!(status.high_water_mark.source, MarkSource::MaxTsUtcSeconds);
    assert_eq!(status.latest_job.name, "Job_ExtractICON");
    assert_eq!(status.latest_job.id, "a3");
    assert_eq!(status.latest_job.state, JobState::Succeeded);
    assert_eq!(status.latest_job.finished_at, at("2026-11-28T09:02:00Z"));

    let decision = verdict(&status, Some(at("2026-11-28T08:30:00Z")));
    assert_eq!(decision, EtlVerdict::CaughtUp { high_water_mark: at("2026-11-28T09:00:00Z") });
    assert!(decision.allows_deletes());
}

#[tokio::test]
async fn an_extraction_behind_the_latest_interaction_blocks_deletes_and_says_by_how_much() {
    let status = status_of("etl_behind", &healthy_info_mart()).await.unwrap();
    // T-Server data extracted up to 11:00 does not count: only Interaction Server data does.
    let decision = verdict(&status, Some(at("2026-11-28T10:30:00Z")));
    assert_eq!(
        decision,
        EtlVerdict::Behind {
            high_water_mark: at("2026-11-28T09:00:00Z"),
            latest_interaction_end: at("2026-11-28T10:30:00Z"),
            by: SignedDuration::from_mins(90),
        }
    );
    assert!(!decision.allows_deletes());
    assert!(decision.to_string().contains("behind by 1h 30m"), "{decision}");
}

#[tokio::test]
async fn a_failed_latest_job_blocks_deletes() {
    let mut statements = healthy_info_mart();
    statements.push(job("b1", "Job_TransformGIM", "FAILED", "2026-11-28 09:10:00+00"));
    let status = status_of("etl_failed", &statements).await.unwrap();
    assert_eq!(status.latest_job.state, JobState::Failed);
    // Even for a contact whose interactions were all extracted.
    let decision = verdict(&status, Some(at("2026-11-28T08:00:00Z")));
    assert!(matches!(&decision, EtlVerdict::LatestJobFailed { job } if job.id == "b1"));
    assert!(!decision.allows_deletes());
    assert_eq!(
        decision.to_string(),
        "the latest Info Mart ETL job failed: Job_TransformGIM (run b1) at 2026-11-28T09:10:00Z"
    );
}

#[tokio::test]
async fn a_failure_among_jobs_ending_in_the_same_second_counts() {
    let mut statements = healthy_info_mart();
    statements.push(job("c1", "Job_ExtractICON", "COMPLETE", "2026-11-28 09:10:00+00"));
    statements.push(job("c2", "Job_TransformGIM", "FAILED", "2026-11-28 09:10:00+00"));
    statements.push(job("c3", "Job_AggregateGIM", "COMPLETE", "2026-11-28 09:10:00+00"));
    let status = status_of("etl_same_second", &statements).await.unwrap();
    assert_eq!(status.latest_job.id, "c2");
    assert!(!verdict(&status, None).allows_deletes());
}

#[tokio::test]
async fn a_running_or_unknown_latest_job_cannot_confirm() {
    let mut statements = healthy_info_mart();
    statements.push(job("d1", "Job_ExtractICON", "PAUSED", "2026-11-28 09:10:00+00"));
    let status = status_of("etl_unknown_status", &statements).await.unwrap();
    let decision = verdict(&status, Some(at("2026-11-28T08:00:00Z")));
    assert!(matches!(decision, EtlVerdict::LatestJobUnconfirmed { .. }), "{decision}");
    assert!(decision.to_string().starts_with("cannot confirm the ETL cycle is complete"));
}

#[tokio::test]
async fn an_unreachable_info_mart_is_a_clear_blocker_not_a_hang() {
    let closed = free_port();
    let infomart =
        section(&format!("host=127.0.0.1 port={closed} dbname=gim user={READER} sslmode=disable"));
    let started = Instant::now();
    let error = target(&infomart).read_status().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(matches!(error, EtlError::Unreachable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.starts_with("cannot confirm the ETL cycle is complete: cannot connect"));
    assert!(message.contains(&format!("host=127.0.0.1 port={closed} dbname=gim user={READER}")));
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(!message.contains(READER_PASSWORD));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_promptly() {
    // Accepts the TCP connection, then says nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut infomart =
        section(&format!("host=127.0.0.1 port={port} dbname=gim user={READER} sslmode=disable"));
    infomart.connect_timeout_ms = Some(300);
    let started = Instant::now();
    let error = target(&infomart).read_status().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(matches!(error, EtlError::ConnectTimeout { .. }), "{error:?}");
    assert!(error.to_string().contains("did not answer within 300ms"), "{error}");
    silent.abort();
}

#[tokio::test]
async fn a_missing_control_table_blocks_deletes() {
    let statements =
        vec![EXTRACT_HISTORY.to_owned(), extraction("G_CALL", 2, "2026-11-28 09:00:00+00")];
    let error = status_of("etl_missing_table", &statements).await.unwrap_err();
    assert!(matches!(error, EtlError::MissingTable { table: "CTL_ETL_HISTORY" }), "{error:?}");
    assert!(error.to_string().starts_with(
        "cannot confirm the ETL cycle is complete: Info Mart has no table `CTL_ETL_HISTORY`"
    ));
}

#[tokio::test]
async fn a_column_of_an_unexpected_type_blocks_deletes() {
    let mut statements = healthy_info_mart();
    statements.push("ALTER TABLE CTL_EXTRACT_HISTORY ALTER COLUMN MAX_TS TYPE varchar(32);".into());
    let error = status_of("etl_wrong_type", &statements).await.unwrap_err();
    assert!(
        matches!(
            &error,
            EtlError::UnexpectedColumnType {
                table: "CTL_EXTRACT_HISTORY",
                column: "MAX_TS",
                found,
                ..
            } if found == "varchar"
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "cannot confirm the ETL cycle is complete: Info Mart's `CTL_EXTRACT_HISTORY.MAX_TS` is of \
         type `varchar`, expected an integer (seconds since 1970, UTC)"
    );
}

#[tokio::test]
async fn a_filter_column_of_another_type_blocks_deletes() {
    let mut statements = healthy_info_mart();
    statements.push(
        "ALTER TABLE CTL_EXTRACT_HISTORY ALTER COLUMN DATA_SOURCE_TYPE TYPE varchar(8);".into(),
    );
    let error = status_of("etl_wrong_filter_type", &statements).await.unwrap_err();
    assert!(
        matches!(error, EtlError::IncompatibleSchema { table: "CTL_EXTRACT_HISTORY", .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_missing_column_blocks_deletes() {
    let mut statements = healthy_info_mart();
    statements.push("ALTER TABLE CTL_ETL_HISTORY DROP COLUMN STATUS;".into());
    let error = status_of("etl_missing_column", &statements).await.unwrap_err();
    assert!(matches!(error, EtlError::MissingColumn { table: "CTL_ETL_HISTORY", .. }), "{error:?}");
    assert!(error.to_string().contains("status"), "{error}");
}

#[tokio::test]
async fn no_interaction_server_extraction_blocks_deletes() {
    let statements = vec![
        EXTRACT_HISTORY.to_owned(),
        ETL_HISTORY.to_owned(),
        extraction("G_CALL", 1, "2026-11-28 11:00:00+00"),
        job("a1", "Job_ExtractICON", "COMPLETE", "2026-11-28 11:02:00+00"),
    ];
    let error = status_of("etl_no_extraction", &statements).await.unwrap_err();
    assert!(matches!(error, EtlError::NoExtraction), "{error:?}");
}

#[tokio::test]
async fn an_empty_job_history_blocks_deletes() {
    let statements = vec![
        EXTRACT_HISTORY.to_owned(),
        ETL_HISTORY.to_owned(),
        extraction("G_CALL", 2, "2026-11-28 09:00:00+00"),
    ];
    let error = status_of("etl_no_jobs", &statements).await.unwrap_err();
    assert!(matches!(error, EtlError::NoJobHistory), "{error:?}");
}

#[tokio::test]
async fn a_local_max_time_needs_the_server_time_zone() {
    let mut statements = healthy_info_mart();
    statements.push("UPDATE CTL_EXTRACT_HISTORY SET MAX_TS = NULL;".into());
    let dsn = info_mart("etl_local_time", &statements);

    let error = target(&section(&dsn)).read_status().await.unwrap_err();
    assert!(matches!(error, EtlError::LocalTimeWithoutZone), "{error:?}");

    let mut infomart = section(&dsn);
    infomart.server_time_zone = Some(SERVER_ZONE.to_owned());
    let status = target(&infomart).read_status().await.unwrap();
    assert_eq!(status.high_water_mark.at, at("2026-11-28T09:00:00Z"));
    assert_eq!(status.high_water_mark.source, MarkSource::MaxTimeInServerZone);
}

#[tokio::test]
async fn a_timestamptz_max_time_is_an_instant() {
    let mut statements = healthy_info_mart();
    statements.push(format!(
        "UPDATE CTL_EXTRACT_HISTORY SET MAX_TS = NULL;
         ALTER TABLE CTL_EXTRACT_HISTORY ALTER COLUMN MAX_TIME TYPE timestamptz(3)
           USING MAX_TIME AT TIME ZONE '{SERVER_ZONE}';"
    ));
    let status = status_of("etl_timestamptz", &statements).await.unwrap();
    assert_eq!(status.high_water_mark.at, at("2026-11-28T09:00:00Z"));
    assert_eq!(status.high_water_mark.source, MarkSource::MaxTimeWithTimeZone);
}

#[tokio::test]
async fn the_password_comes_from_the_named_variable() {
    let dsn = info_mart("etl_password", &healthy_info_mart());
    // The server asks for it: the right one from the variable connects...
    assert!(target(&section(&dsn)).read_status().await.is_ok());
    // ...a wrong one does not, and the error shows neither password.
    let wrong = |name: &str| (name == PASSWORD_VARIABLE).then(|| OsString::from("not-it"));
    let target =
        InfoMartTarget::resolve(&section(&dsn), &Timeouts::default(), Path::new(""), &wrong)
            .unwrap();
    let error = target.read_status().await.unwrap_err();
    assert!(matches!(error, EtlError::Unreachable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("password authentication failed"), "{message}");
    assert!(!message.contains("not-it") && !message.contains(READER_PASSWORD));
}

#[test]
fn a_missing_password_variable_is_named_in_the_error() {
    let variable = "UCS_GDPR_TEST_SURELY_UNSET_INFOMART_PASSWORD";
    let environment: Environment = serde_json::from_value(serde_json::json!({
        "type": "rest",
        "tenant": 101,
        "infomart": {
            "dsn": "host=127.0.0.1 dbname=gim user=gdpr_ro",
            "passwordEnv": variable,
        },
    }))
    .unwrap();
    let error = InfoMartTarget::from_environment(&environment, Path::new("")).unwrap_err();
    assert!(matches!(&error, EtlError::MissingPassword { variable: v } if v == variable));
    assert_eq!(
        error.to_string(),
        format!(
            "cannot confirm the ETL cycle is complete: the environment variable `{variable}` that \
             should hold the Info Mart password is not set"
        )
    );
}

#[test]
fn an_environment_without_info_mart_is_not_configured() {
    let environment: Environment =
        serde_json::from_value(serde_json::json!({ "type": "rest", "tenant": 101 })).unwrap();
    assert!(InfoMartTarget::from_environment(&environment, Path::new("")).unwrap().is_none());
}

#[tokio::test]
async fn tls_verified_against_the_ca_file_connects() {
    let ca_file = server().ca_file.clone().expect(
        "the TLS tests need the CA of the server's certificate: set UCS_GDPR_TEST_PG_CA beside \
         UCS_GDPR_TEST_PG",
    );
    let dsn =
        info_mart("etl_tls", &healthy_info_mart()).replace("sslmode=disable", "sslmode=require");
    let mut infomart = section(&dsn);
    infomart.ca_file = Some(ca_file);
    let status = target(&infomart).read_status().await.unwrap();
    assert_eq!(status.high_water_mark.at, at("2026-11-28T09:00:00Z"));
}

#[tokio::test]
async fn a_certificate_from_an_unknown_authority_is_refused() {
    let dsn = info_mart("etl_tls_unknown_ca", &healthy_info_mart())
        .replace("sslmode=disable", "sslmode=require");
    // The system's roots alone do not know the test CA.
    let error = target(&section(&dsn)).read_status().await.unwrap_err();
    assert!(matches!(error, EtlError::Unreachable { .. }), "{error:?}");
    assert!(error.to_string().to_lowercase().contains("certificate"), "{error}");
}

#[tokio::test]
async fn requiring_tls_from_a_server_without_it_is_a_clear_blocker() {
    // Answers the client's SSLRequest with `N`, as a server without TLS does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let plain = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0_u8; 8];
            if socket.read_exact(&mut request).await.is_ok() {
                let _ = socket.write_all(b"N").await;
            }
        }
    });
    let infomart =
        section(&format!("host=127.0.0.1 port={port} dbname=gim user={READER} sslmode=require"));
    let error = target(&infomart).read_status().await.unwrap_err();
    assert!(matches!(error, EtlError::Unreachable { .. }), "{error:?}");
    assert!(error.to_string().contains("server does not support TLS"), "{error}");
    plain.abort();
}

/// Loads an environments file whose `production` environment has this `infomart` section.
fn environments_with(infomart: &str) -> Result<ucs_gdpr::environment::Environments, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ucs-gdpr.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: ucs-gdpr/v1\nkind: Environments\nenvironments:\n  production:\n    \
             type: rest\n    tenant: 101\n    ucs: {{ url: https://ucs.example.com/ }}\n    hmacKeyEnv: UCS_GDPR_TEST_HMAC\n    \
             infomart: {infomart}\n"
        ),
    )
    .unwrap();
    ucs_gdpr::environment::Environments::load(&path).map(|(environments, _)| environments).map_err(
        |report| report.diagnostics.iter().map(|d| format!("{}: {}", d.code, d.message)).collect(),
    )
}

#[test]
fn the_environments_file_refuses_a_password_in_the_info_mart_dsn() {
    let errors = environments_with(
        "{ dsn: \"host=im dbname=gim user=gdpr_ro password=hunter2\", passwordEnv: IM_PW }",
    )
    .unwrap_err();
    assert_eq!(
        errors,
        ["environments::secret-in-file: environment `production`: the Info Mart `dsn` contains a \
          password"]
    );
    let errors = environments_with("{ dsn: \"host='im\" }").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("environments::invalid-dsn"), "{errors:?}");
    let errors = environments_with("{ dsn: \"host=im dbname=gim\" }").unwrap_err();
    assert_eq!(
        errors,
        [
            "environments::invalid-dsn: environment `production`: the Info Mart `dsn` names no `user`"
        ]
    );
}

#[test]
fn the_environments_file_takes_the_info_mart_settings() {
    let environments = environments_with(
        "{ dsn: \"host=im dbname=gim user=gdpr_ro sslmode=require\", passwordEnv: IM_PW, \
         connectTimeoutMs: 2000, queryTimeoutMs: 9000, serverTimeZone: Europe/Berlin }",
    )
    .unwrap();
    let infomart = environments.get("production").unwrap().infomart.as_ref().unwrap();
    assert_eq!(infomart.connect_timeout_ms, Some(2000));
    assert_eq!(infomart.query_timeout_ms, Some(9000));
    assert_eq!(infomart.server_time_zone.as_deref(), Some("Europe/Berlin"));
    let errors =
        environments_with("{ dsn: \"host=im user=gdpr_ro\", caFile: missing-ca.pem }").unwrap_err();
    assert_eq!(
        errors,
        ["environments::missing-file: environment `production`: the Info Mart CA file does not \
          exist"]
    );
}

#[tokio::test]
async fn a_query_that_hangs_times_out_promptly() {
    let dsn = info_mart("etl_locked", &healthy_info_mart());
    // The superuser holds an exclusive lock on the job history: the check's read waits on it.
    let (mut admin, connection) = tokio_postgres::connect(
        &format!("{} dbname=etl_locked", server().admin),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let lock = admin.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE CTL_ETL_HISTORY IN ACCESS EXCLUSIVE MODE").await.unwrap();

    let mut infomart = section(&dsn);
    infomart.query_timeout_ms = Some(500);
    let started = Instant::now();
    let error = target(&infomart).read_status().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    // The server's statement_timeout or the client's own timeout, whichever fires first.
    assert!(
        matches!(error, EtlError::StatementTimeout | EtlError::QueryTimeout { .. }),
        "{error:?}"
    );
    assert!(error.to_string().starts_with("cannot confirm the ETL cycle is complete"));

    lock.rollback().await.unwrap();
    drop(admin);
    let _ = connection.await;
}
