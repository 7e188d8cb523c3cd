//! The environments file: named targets (UCS, Context Services, GMS, Info Mart) and their policy.
//!
//! Secrets never live in the file: it names the environment variables that hold them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::document::{self, Diagnostic, FileKind, FileReport, yaml::SpanMap};
pub use crate::ucs::UcsVersion;

/// The file looked for in the current folder when no `--env-file` is given.
pub const DEFAULT_FILE: &str = "ucs-gdpr.yaml";

/// An environments file (`kind: Environments`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Environments {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    /// The environments by name.
    pub environments: BTreeMap<String, Environment>,
    /// The folder the file is in; relative paths in it are resolved from there.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// What kind of target an environment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentType {
    /// The built-in simulator, started in-process.
    Embedded,
    /// A real UCS over REST.
    Rest,
}

/// One target.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Environment {
    /// Embedded or REST.
    #[serde(rename = "type")]
    pub kind: EnvironmentType,
    /// What it is, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// The UCS tenant.
    pub tenant: u64,
    /// Embedded: the simulator's dataset.
    #[serde(default)]
    pub dataset: Option<PathBuf>,
    /// Embedded: where the simulator keeps its state across runs.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Embedded: faults the simulator injects.
    #[serde(default)]
    pub faults: Option<SimFaults>,
    /// REST: the UCS endpoint and which UCS it is.
    #[serde(default)]
    pub ucs: Option<UcsService>,
    /// The Context Services endpoint.
    #[serde(default)]
    pub context_services: Option<Service>,
    /// The GMS endpoint.
    #[serde(default)]
    pub gms: Option<Gms>,
    /// The Info Mart database.
    #[serde(default)]
    pub infomart: Option<InfoMart>,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Requests per second.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// The variable holding the HMAC key for subject digests.
    #[serde(default)]
    pub hmac_key_env: Option<String>,
    /// What must hold before anything is applied.
    #[serde(default)]
    pub policy: Policy,
    /// What a plan made here is bound to (computed when the file is loaded).
    #[serde(skip)]
    pub digests: Digests,
}

/// What a plan is bound to: the sha256 of the policy it was made under and of the target it
/// was made against. `apply` refuses a plan whose digests differ from the environment it is
/// given, so a copy of the environments file with a laxer policy cannot run it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests {
    /// The approval rule, the approvers, their keys (by key id) and the checks.
    pub policy: String,
    /// The UCS (and the services the checks read) the plan was made against.
    pub target: String,
}

impl Digests {
    /// The digests of `environment`, whose relative paths are resolved from `base_dir`.
    pub fn of(environment: &Environment, base_dir: &Path) -> Digests {
        let policy = &environment.policy;
        let mut approvers = policy.approvers.clone();
        approvers.sort();
        approvers.dedup();
        // A key is bound by its id, so replacing the key file is a different policy; a key that
        // cannot be read is bound as such.
        let keys: BTreeMap<&str, String> = policy
            .approver_keys
            .iter()
            .map(|(name, file)| {
                let id = crate::audit::load_verifying_key(&base_dir.join(file))
                    .map_or_else(|_| "unreadable".to_owned(), |key| crate::audit::key_id(&key));
                (name.as_str(), id)
            })
            .collect();
        let policy_value = serde_json::json!({
            "requireApproval": environment.requires_approval(),
            "approvers": approvers,
            "minApprovals": policy.min_approvals.unwrap_or(1),
            "approverKeys": keys,
            "requireChecks": policy.require_checks,
            "forgetRunbook": policy.forget_runbook,
        });
        // The simulated world by its content (machine-independent: a rehearsal gives the same
        // plan ids everywhere), and the folder that keeps its state as the file names it.
        let dataset = environment.dataset.as_ref().map(|p| {
            std::fs::read(base_dir.join(p))
                .map_or_else(|_| "unreadable".to_owned(), |b| crate::canonical::sha256_hex(&b))
        });
        let target_value = serde_json::json!({
            "type": match environment.kind {
                EnvironmentType::Embedded => "embedded",
                EnvironmentType::Rest => "rest",
            },
            "tenant": environment.tenant,
            "dataset": dataset,
            "stateDir": environment.state_dir,
            "ucs": environment.ucs.as_ref().map(|u| (u.url.clone(), u.version.as_str())),
            "contextServices": environment.context_services.as_ref().map(|c| c.url.clone()),
            "gms": environment.gms.as_ref().map(|g| (g.url.clone(), g.service.clone())),
            "infomart": environment.infomart.as_ref().map(|i| i.dsn.clone()),
            "hmacKeyEnv": environment.hmac_key_env,
        });
        let digest = |value: &serde_json::Value| {
            crate::canonical::sha256_hex(&crate::canonical::to_vec(value))
        };
        Digests { policy: digest(&policy_value), target: digest(&target_value) }
    }
}

fn default_concurrency() -> u32 {
    8
}

/// Faults an embedded simulator injects (see `ucs-gdpr sim serve --help`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimFaults {
    /// Seed of every random choice.
    #[serde(default)]
    pub seed: u64,
    /// Latency added to every call.
    #[serde(default)]
    pub latency_ms: u64,
    /// Extra latency, uniform in `[0, jitter]`.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Share of calls answered 503.
    #[serde(default)]
    pub error_rate: f64,
    /// Share of calls never answered.
    #[serde(default)]
    pub timeout_rate: f64,
    /// Share of calls whose connection is dropped.
    #[serde(default)]
    pub reset_rate: f64,
    /// Scripted failures.
    #[serde(default)]
    pub script: Vec<crate::sim::ScriptedFault>,
    /// Scripted failures of the calls about one contact.
    #[serde(default)]
    pub contact_script: Vec<crate::sim::ContactFault>,
}

impl SimFaults {
    fn options(&self) -> crate::sim::FaultOptions {
        crate::sim::FaultOptions {
            seed: self.seed,
            latency: std::time::Duration::from_millis(self.latency_ms),
            jitter: std::time::Duration::from_millis(self.jitter_ms),
            error_rate: self.error_rate,
            timeout_rate: self.timeout_rate,
            reset_rate: self.reset_rate,
            script: self.script.clone(),
            contact_script: self.contact_script.clone(),
        }
    }
}

/// An HTTP service.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// Its base URL.
    pub url: String,
    /// How to authenticate.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Extra certificate authorities.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// The UCS endpoint of a REST environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UcsService {
    /// Its base URL.
    pub url: String,
    /// How to authenticate.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Extra certificate authorities.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Which UCS it is (default `9.1`). `8.5` is refused for REST: UCS 8.5 speaks Platform SDK
    /// (ESP over TCP), and this build has no ESP transport.
    #[serde(default)]
    pub version: UcsVersion,
}

/// Authentication, by the names of the variables that hold the secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Auth {
    /// Basic: the user.
    #[serde(default)]
    pub user: Option<String>,
    /// Basic: the variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The variable holding a bearer token.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
}

/// The GMS endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gms {
    /// Its base URL.
    pub url: String,
    /// Ignored (kept so older files stay valid): callbacks are found across every callback
    /// service and cancelled in the service each record names (`_service_name`).
    #[serde(default)]
    pub service: Option<String>,
    /// How to authenticate.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Extra callback properties to look a contact's callbacks up by, beyond its phone numbers
    /// (`_customer_number`): GMS property -> the contact attribute whose values it holds, e.g.
    /// `{ _customer_email: EmailAddress }` for a service whose `_customer_lookup_keys` has it.
    #[serde(default)]
    pub lookup_keys: std::collections::BTreeMap<String, String>,
    /// Extra certificate authorities (PEM) to trust for GMS instead of UCS's `caFile`,
    /// relative to the file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// The Info Mart database (PostgreSQL), read by the `infomart/etl-complete` check.
///
/// Only Info Mart's control tables are read (see [`crate::infomart`] for the exact tables and
/// columns), in a read-only transaction.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InfoMart {
    /// The connection string, without the password: `host=... dbname=... user=...` or a
    /// `postgresql://` URL. TLS follows its `sslmode` (`disable`, `prefer`, `require`).
    pub dsn: String,
    /// The variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// To connect, in milliseconds (default: the environment's `timeouts.connectMs`).
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// For the whole check once connected, in milliseconds (default: `timeouts.readMs`).
    #[serde(default)]
    pub query_timeout_ms: Option<u64>,
    /// Extra certificate authorities (PEM) to trust for TLS, relative to the file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The Info Mart server's IANA time zone, such as `Europe/Berlin`: only used when an
    /// extraction row has no UTC `MAX_TS` and its `MAX_TIME` is a local `timestamp`.
    #[serde(default)]
    pub server_time_zone: Option<String>,
}

/// Why an Info Mart `dsn` cannot be used. Its text is never repeated: it may hold a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnError {
    /// Not a PostgreSQL connection string.
    Invalid,
    /// It carries a password: secrets never live in the environments file.
    Password,
    /// It lacks something every connection needs (`host`, `user`).
    Incomplete {
        /// The missing setting.
        missing: &'static str,
    },
}

/// Parses an Info Mart `dsn`, refusing one that holds a password or names no host or user.
///
/// # Errors
/// A [`DsnError`] saying which.
pub fn parse_dsn(dsn: &str) -> Result<tokio_postgres::Config, DsnError> {
    let config: tokio_postgres::Config = dsn.parse().map_err(|_| DsnError::Invalid)?;
    if config.get_password().is_some() {
        return Err(DsnError::Password);
    }
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err(DsnError::Incomplete { missing: "host" });
    }
    if config.get_user().is_none() {
        return Err(DsnError::Incomplete { missing: "user" });
    }
    Ok(config)
}

impl InfoMart {
    /// The DSN must parse and must not carry the password (its text is never repeated).
    fn check(&self, name: &str, dsn_span: &std::ops::Range<usize>) -> Vec<Diagnostic> {
        match parse_dsn(&self.dsn) {
            Ok(_) => Vec::new(),
            Err(DsnError::Password) => vec![
                Diagnostic::error(
                    "environments::secret-in-file",
                    format!("environment `{name}`: the Info Mart `dsn` contains a password"),
                    dsn_span.clone(),
                )
                .label("holds a secret")
                .help("remove the password and name the variable that holds it in `passwordEnv`"),
            ],
            Err(error) => vec![
                Diagnostic::error(
                    "environments::invalid-dsn",
                    match error {
                        DsnError::Incomplete { missing } => {
                            format!(
                                "environment `{name}`: the Info Mart `dsn` names no `{missing}`"
                            )
                        }
                        _ => format!(
                            "environment `{name}`: the Info Mart `dsn` is not a PostgreSQL \
                             connection string"
                        ),
                    },
                    dsn_span.clone(),
                )
                .label("not usable")
                .help("write `host=... dbname=... user=...` or a postgresql:// URL"),
            ],
        }
    }
}

/// Timeouts, in milliseconds.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// To connect.
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    /// For one answer.
    #[serde(default = "default_read_ms")]
    pub read_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect_ms: default_connect_ms(), read_ms: default_read_ms() }
    }
}

fn default_connect_ms() -> u64 {
    5_000
}

fn default_read_ms() -> u64 {
    30_000
}

/// What must hold before anything is applied.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Whether apply needs an approval (default: `true` for REST, `false` for embedded).
    #[serde(default)]
    pub require_approval: Option<bool>,
    /// Who may approve.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// How many distinct approvals.
    #[serde(default)]
    pub min_approvals: Option<u32>,
    /// Approvers whose approvals must be signed, with their public key files.
    #[serde(default)]
    pub approver_keys: BTreeMap<String, PathBuf>,
    /// Whether a check that is not configured blocks.
    #[serde(default)]
    pub require_checks: bool,
    /// The runbook `ucs-gdpr delete` uses.
    #[serde(default)]
    pub forget_runbook: Option<String>,
    /// The audit log.
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// The signing key.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// Where exports go.
    #[serde(default)]
    pub exports: Option<PathBuf>,
}

impl Environments {
    /// Loads and validates an environments file.
    ///
    /// # Errors
    /// The file's report when it has any error.
    pub fn load(path: &Path) -> Result<(Environments, FileReport), FileReport> {
        let document::Loaded { mut report, document } = document::load(path);
        let Some(document) = document else { return Err(report) };
        match document::detect_kind(&document) {
            Ok(FileKind::Environments) => {}
            Ok(other) => {
                report.diagnostics.push(Diagnostic::error(
                    "schema::wrong-kind",
                    format!("this is a `{}` file, not an environments file", other.name()),
                    document::value_span(&document, "/kind"),
                ));
                return Err(report);
            }
            Err(diagnostic) => {
                report.diagnostics.push(*diagnostic);
                return Err(report);
            }
        }
        let Some(mut environments) =
            document::typed::<Environments>(FileKind::Environments, &document, &mut report)
        else {
            return Err(report);
        };
        report.diagnostics.extend(environments.check(path, &document.spans));
        if report.has_errors() {
            return Err(report);
        }
        environments.base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        let base_dir = environments.base_dir.clone();
        for environment in environments.environments.values_mut() {
            environment.digests = Digests::of(environment, &base_dir);
        }
        Ok((environments, report))
    }

    /// Rules beyond the schema: settings that do not apply to the environment's type, and
    /// files it names that do not exist.
    pub fn check(&self, path: &Path, spans: &SpanMap) -> Vec<Diagnostic> {
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        let span = |pointer: String| spans.find(&pointer).map(|n| n.value.clone()).unwrap_or(0..0);
        let key = |pointer: String| {
            spans.get(&pointer).and_then(|n| n.key.clone()).unwrap_or_else(|| span(pointer))
        };
        let mut diagnostics = Vec::new();
        for (name, environment) in &self.environments {
            let escaped = name.replace('~', "~0").replace('/', "~1");
            let at = |field: &str| format!("/environments/{escaped}/{field}");
            match environment.kind {
                EnvironmentType::Embedded => {
                    if environment.ucs.is_some() {
                        diagnostics.push(
                            Diagnostic::warning(
                                "environments::ignored",
                                format!(
                                    "environment `{name}` is embedded: its `ucs` endpoint is not \
                                     used"
                                ),
                                key(at("ucs")),
                            )
                            .help(
                                "an embedded environment is the UCS version its dataset names \
                                 (`ucsVersion` in the dataset file)",
                            ),
                        );
                    }
                    if let Some(dataset) = &environment.dataset
                        && !base.join(dataset).is_file()
                    {
                        diagnostics.push(
                            Diagnostic::error(
                                "environments::missing-file",
                                format!("environment `{name}`: the dataset file does not exist"),
                                span(at("dataset")),
                            )
                            .label("not found")
                            .help("the path is relative to the environments file"),
                        );
                    }
                }
                EnvironmentType::Rest => {
                    if environment.ucs.as_ref().is_some_and(|u| u.version == UcsVersion::V8_5) {
                        diagnostics.push(
                            Diagnostic::error(
                                "environments::no-transport",
                                format!(
                                    "environment `{name}`: UCS 8.5 is reached through Platform \
                                     SDK (ESP over TCP), not REST, and this build has no ESP \
                                     transport"
                                ),
                                span(at("ucs/version")),
                            )
                            .label("not reachable over REST")
                            .help(
                                "point a REST environment at a UCS 9.1; to rehearse UCS 8.5's \
                                 main/archive semantics, use an embedded environment whose \
                                 dataset says `ucsVersion: \"8.5\"`",
                            ),
                        );
                    }
                    if environment.hmac_key_env.is_none() {
                        diagnostics.push(
                            Diagnostic::error(
                                "environments::no-subject-key",
                                format!(
                                    "environment `{name}` is a REST target and names no \
                                     `hmacKeyEnv`: plans and audit records could not digest \
                                     subject identifiers, so every command would refuse it"
                                ),
                                key(format!("/environments/{escaped}")),
                            )
                            .label("no hmacKeyEnv")
                            .help(
                                "add `hmacKeyEnv: NAME`, the environment variable that will \
                                 hold a key of this environment's own",
                            ),
                        );
                    }
                    let ca_files = [
                        (
                            "UCS",
                            "ucs/caFile",
                            environment.ucs.as_ref().and_then(|u| u.ca_file.as_ref()),
                        ),
                        (
                            "Context Services",
                            "contextServices/caFile",
                            environment.context_services.as_ref().and_then(|c| c.ca_file.as_ref()),
                        ),
                        (
                            "GMS",
                            "gms/caFile",
                            environment.gms.as_ref().and_then(|g| g.ca_file.as_ref()),
                        ),
                    ];
                    for (service, field, ca_file) in ca_files {
                        if let Some(ca_file) = ca_file
                            && !base.join(ca_file).is_file()
                        {
                            diagnostics.push(
                                Diagnostic::error(
                                    "environments::missing-file",
                                    format!(
                                        "environment `{name}`: the {service} CA file does not exist"
                                    ),
                                    span(at(field)),
                                )
                                .label("not found")
                                .help("the path is relative to the environments file"),
                            );
                        }
                    }
                    for field in ["dataset", "stateDir", "faults"] {
                        if spans.get(&at(field)).is_some() {
                            diagnostics.push(Diagnostic::warning(
                                "environments::ignored",
                                format!(
                                    "environment `{name}` is a REST target: `{field}` is not used"
                                ),
                                key(at(field)),
                            ));
                        }
                    }
                }
            }
            if let Some(infomart) = &environment.infomart {
                diagnostics.extend(infomart.check(name, &span(at("infomart/dsn"))));
                if let Some(ca_file) = &infomart.ca_file
                    && !base.join(ca_file).is_file()
                {
                    diagnostics.push(
                        Diagnostic::error(
                            "environments::missing-file",
                            format!("environment `{name}`: the Info Mart CA file does not exist"),
                            span(at("infomart/caFile")),
                        )
                        .label("not found")
                        .help("the path is relative to the environments file"),
                    );
                }
            }
            diagnostics.extend(check_policy(name, environment, &at, &span));
        }
        diagnostics
    }

    /// The environment named `name`.
    pub fn get(&self, name: &str) -> Option<&Environment> {
        self.environments.get(name)
    }

    /// Every environment name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.environments.keys().map(String::as_str)
    }
}

impl Environment {
    /// Whether apply needs an approval here.
    pub fn requires_approval(&self) -> bool {
        self.policy.require_approval.unwrap_or(self.kind == EnvironmentType::Rest)
    }
}

/// The approval rule: enough approvers for `minApprovals`, names `approve --by` accepts, and,
/// where approval is required, a registered key for every approver (an unsigned approval never
/// counts there). Key files are read at apply (like the signing key, they live on the machine
/// that runs it); one that cannot be read verifies nothing.
fn check_policy(
    name: &str,
    environment: &Environment,
    at: &dyn Fn(&str) -> String,
    span: &dyn Fn(String) -> std::ops::Range<usize>,
) -> Vec<Diagnostic> {
    let policy = &environment.policy;
    let mut diagnostics = Vec::new();
    let required = environment.requires_approval();
    let min = policy.min_approvals.unwrap_or(1);
    // A rule that no list of approvers meets: `minApprovals` over the approvers listed, or
    // approval asked for in so many words with nobody to give it. (A REST environment that says
    // nothing about approval requires it and can plan and export; apply refuses there until
    // approvers are listed.)
    let unmeetable = usize::try_from(min).unwrap_or(usize::MAX) > policy.approvers.len()
        && (policy.min_approvals.is_some()
            || !policy.approvers.is_empty()
            || policy.require_approval == Some(true));
    if unmeetable {
        let where_ = if policy.min_approvals.is_some() {
            span(at("policy/minApprovals"))
        } else if policy.approvers.is_empty() && spans_has(span, at("policy/approvers")) {
            span(at("policy/approvers"))
        } else {
            span(at("policy"))
        };
        diagnostics.push(
            Diagnostic::error(
                "environments::approvals",
                format!(
                    "environment `{name}` needs {min} approval(s) but names only {} approver(s)",
                    policy.approvers.len()
                ),
                where_,
            )
            .help("list at least `minApprovals` approvers under `policy.approvers`"),
        );
    }
    for (index, approver) in policy.approvers.iter().enumerate() {
        let item = span(at(&format!("policy/approvers/{index}")));
        if crate::audit::Actor::new(approver.clone()).is_err() {
            diagnostics.push(
                Diagnostic::error(
                    "environments::approver-name",
                    format!(
                        "environment `{name}`: approver {} is not a login name `approve --by` \
                         accepts",
                        index + 1
                    ),
                    item.clone(),
                )
                .label("not a login name")
                .help("a login name: up to 64 letters, digits, `.`, `_`, `-`, starting with a letter or digit"),
            );
        } else if required && !policy.approver_keys.contains_key(approver) {
            diagnostics.push(
                Diagnostic::error(
                    "environments::approver-without-key",
                    format!(
                        "environment `{name}` requires approval, but approver `{approver}` has \
                         no registered key: an unsigned approval proves nothing about who gave it"
                    ),
                    item,
                )
                .label("no key under `policy.approverKeys`")
                .help(
                    "create a key pair with `ucs-gdpr audit keygen`, register the public key \
                     under `policy.approverKeys`, and approve with `approve --key`",
                ),
            );
        }
    }
    diagnostics
}

/// Whether the span of `pointer` is known (an empty range means it is not).
fn spans_has(span: &dyn Fn(String) -> std::ops::Range<usize>, pointer: String) -> bool {
    span(pointer) != (0..0)
}

/// The key that turns subject identifiers into digests in embedded environments that name no
/// `hmacKeyEnv`. It is public on purpose: the simulator's data is fictional, and a rehearsal
/// must give the same plan ids on every machine. Real environments must name their own key.
const DEMO_HMAC_KEY: &[u8] = b"ucs-gdpr demo key: not a secret, embedded environments only";

/// Why an environment could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No environment of that name.
    #[error("there is no environment named `{0}` in the environments file")]
    Unknown(String),
    /// An embedded environment without a dataset.
    #[error("environment `{0}` is embedded but names no `dataset`")]
    NoDataset(String),
    /// A REST environment without a UCS endpoint.
    #[error("environment `{0}` is a REST target but names no `ucs` endpoint")]
    NoEndpoint(String),
    /// A REST client configuration asked of an embedded environment.
    #[error("environment `{0}` is embedded: its client is configured by the simulator it starts")]
    NotRest(String),
    /// The simulator did not start.
    #[error("the embedded simulator did not start")]
    Simulator(#[from] crate::sim::SimError),
    /// The client configuration is unusable.
    #[error("the connection settings are not usable")]
    Client(#[from] crate::ucs::ConfigError),
    /// A secret could not be read from its environment variable.
    #[error(transparent)]
    Auth(#[from] crate::ucs::AuthError),
    /// The HMAC key for subject digests is missing or too short.
    #[error(transparent)]
    SubjectKey(#[from] crate::audit::SubjectKeyError),
    /// A REST environment that says UCS 8.5 (validate refuses it too).
    #[error(
        "environment `{0}` says UCS 8.5, which is reached through Platform SDK (ESP over TCP): \
         this build has no ESP transport"
    )]
    NoTransport(String),
    /// A REST environment must name its HMAC key.
    #[error("environment `{0}` must name `hmacKeyEnv`: subject digests need a key of its own")]
    NoSubjectKey(String),
}

/// A live connection to an environment: the REST client, and the embedded simulator it talks
/// to when there is one (stopped when this is dropped).
#[derive(Debug)]
pub struct Connection {
    /// The client every stage uses, whatever the target.
    pub client: crate::ucs::RestClient,
    /// The in-process simulator of an embedded environment.
    pub simulator: Option<crate::sim::RunningSim>,
    /// Subject digests for plans and audit records.
    pub digester: crate::audit::SubjectDigester,
    /// Which UCS it is: the REST environment's `ucs.version`, or the embedded dataset's
    /// `ucsVersion`.
    pub ucs_version: UcsVersion,
}

impl Connection {
    /// Stops the embedded simulator, if there is one, and reports what its conformance journal
    /// holds: a request UCS as documented would refuse, a dangerous one (an identification
    /// that could create a contact), or a contact created, is a bug in this tool's connector,
    /// and the front end should say so rather than report success.
    ///
    /// # Errors
    /// [`NotAsDocumented`] when the simulator saw any such request.
    pub async fn close(self) -> Result<(), NotAsDocumented> {
        let Some(simulator) = self.simulator else { return Ok(()) };
        let conformance = simulator.conformance();
        simulator.shutdown().await;
        if conformance.is_clean() { Ok(()) } else { Err(NotAsDocumented(conformance)) }
    }
}

/// Requests the embedded simulator saw that UCS, as Genesys documents it, would refuse or that
/// a GDPR tool must never send. Lists operations and problems, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAsDocumented(pub crate::sim::Conformance);

impl std::fmt::Display for NotAsDocumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let journal = &self.0;
        write!(
            f,
            "the built-in simulator saw requests that UCS as documented would refuse or that \
             must never be sent (a bug in ucs-gdpr's connector; please report it):"
        )?;
        for entry in journal.non_conforming.iter().chain(&journal.dangerous) {
            write!(f, "\n  {}: {} ({}x)", entry.operation, entry.problem, entry.count)?;
        }
        if journal.contacts_created > 0 {
            write!(f, "\n  {} contact(s) created by identification", journal.contacts_created)?;
        }
        Ok(())
    }
}

impl std::error::Error for NotAsDocumented {}

impl Environments {
    /// The client configuration a REST environment named `name` connects with: its endpoints,
    /// each one's credentials (resolved from their variables) and CA file (resolved against the
    /// environments file's folder), and which UCS it is. The timeouts, limits and tenant are
    /// set by [`Environments::connect`].
    ///
    /// # Errors
    /// An unknown name, not a REST environment, no UCS endpoint, a UCS without a REST
    /// transport, or a secret that cannot be read.
    pub fn rest_config(
        &self,
        name: &str,
    ) -> Result<(crate::ucs::ClientConfig, UcsVersion), ConnectError> {
        use crate::ucs::{Auth as ClientAuth, ClientConfig};
        let environment = self.get(name).ok_or_else(|| ConnectError::Unknown(name.to_owned()))?;
        if environment.kind != EnvironmentType::Rest {
            return Err(ConnectError::NotRest(name.to_owned()));
        }
        let resolve = |auth: Option<&Auth>| match auth {
            None => Ok(ClientAuth::None),
            Some(a) => ClientAuth::resolve(
                a.user.as_deref(),
                a.password_env.as_deref(),
                a.bearer_token_env.as_deref(),
            ),
        };
        let ucs =
            environment.ucs.as_ref().ok_or_else(|| ConnectError::NoEndpoint(name.to_owned()))?;
        if ucs.version == UcsVersion::V8_5 {
            return Err(ConnectError::NoTransport(name.to_owned()));
        }
        let mut config = ClientConfig::new(ucs.url.clone());
        config.auth = resolve(ucs.auth.as_ref())?;
        config.ca_file = ucs.ca_file.as_ref().map(|f| self.base_dir.join(f));
        if let Some(service) = &environment.context_services {
            config.context_services_url = Some(service.url.clone());
            config.context_services_ca_file =
                service.ca_file.as_ref().map(|f| self.base_dir.join(f));
            if service.auth.is_some() {
                config.context_services_auth = Some(resolve(service.auth.as_ref())?);
            }
        }
        if let Some(gms) = &environment.gms {
            config.gms_url = Some(gms.url.clone());
            config.gms_ca_file = gms.ca_file.as_ref().map(|f| self.base_dir.join(f));
            config.gms_lookup_keys =
                gms.lookup_keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            if gms.auth.is_some() {
                config.gms_auth = Some(resolve(gms.auth.as_ref())?);
            }
        }
        Ok((config, ucs.version))
    }

    /// Connects to the environment named `name`: starts the simulator for an embedded one and
    /// points the real REST client at it, so every target goes through one code path.
    ///
    /// # Errors
    /// An unknown name, missing settings or secrets, or a simulator that does not start.
    pub async fn connect(
        &self,
        name: &str,
        on_retry: Option<crate::ucs::RetryHook>,
    ) -> Result<Connection, ConnectError> {
        use crate::ucs::{ClientConfig, RestClient};
        let environment = self.get(name).ok_or_else(|| ConnectError::Unknown(name.to_owned()))?;
        let (mut config, simulator, ucs_version) = match environment.kind {
            EnvironmentType::Embedded => {
                let dataset = environment
                    .dataset
                    .as_ref()
                    .ok_or_else(|| ConnectError::NoDataset(name.to_owned()))?;
                let mut options = crate::sim::SimOptions::new(self.base_dir.join(dataset));
                options.state_dir = environment.state_dir.as_ref().map(|d| self.base_dir.join(d));
                options.faults = environment.faults.clone().unwrap_or_default().options();
                let simulator = crate::sim::Simulator::start(options).await?;
                let version = simulator.ucs_version();
                (ClientConfig::new(simulator.base_url()), Some(simulator), version)
            }
            EnvironmentType::Rest => {
                let (config, version) = self.rest_config(name)?;
                (config, None, version)
            }
        };
        config.connect_timeout = std::time::Duration::from_millis(environment.timeouts.connect_ms);
        config.read_timeout = std::time::Duration::from_millis(environment.timeouts.read_ms);
        config.concurrency = usize::try_from(environment.concurrency).unwrap_or(8).max(1);
        config.rate_limit = environment.rate_limit;
        config.tenant = u32::try_from(environment.tenant).ok().map(crate::ucs::TenantId);
        config.on_retry = on_retry;
        let client = RestClient::new(config)?;
        let digester = match (&environment.hmac_key_env, environment.kind) {
            (Some(variable), _) => crate::audit::SubjectDigester::from_env(variable)?,
            (None, EnvironmentType::Embedded) => crate::audit::SubjectDigester::new(DEMO_HMAC_KEY)?,
            (None, EnvironmentType::Rest) => {
                return Err(ConnectError::NoSubjectKey(name.to_owned()));
            }
        };
        Ok(Connection { client, simulator, digester, ucs_version })
    }
}
