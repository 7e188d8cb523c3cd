//! The connector's typed errors. Their messages name the operation, ids and HTTP status, never
//! personal data: a server's error text is not copied in, only its (sanitised) error code.

use std::fmt;

use super::wire::Operation;

/// What kind of failure a [`UcsError`] is, which decides what the caller may do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Worth retrying: connection refused or reset, timeout, 429/502/503/504.
    Transient,
    /// Retrying will not help: the request was refused (4xx, 500, 501, ...).
    Permanent,
    /// The contact, interaction, document or callback does not exist.
    NotFound,
    /// The server answered something this connector cannot read.
    Protocol,
}

impl ErrorKind {
    /// The kind as audit records and receipts code it: `transient`, `permanent`, `notfound`,
    /// `protocol`. A stable code, spelled out here rather than taken from `Debug`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::NotFound => "notfound",
            ErrorKind::Protocol => "protocol",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::NotFound => "not found",
            ErrorKind::Protocol => "protocol",
        })
    }
}

/// What was wrong with a response the connector could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolFault {
    /// The body is not the JSON expected.
    Malformed,
    /// The body ended before its announced length, or the connection dropped while reading it.
    Truncated,
    /// The body's content type is not the one expected.
    WrongContentType,
    /// The body is larger than the configured maximum.
    Oversized,
}

impl fmt::Display for ProtocolFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolFault::Malformed => "malformed body",
            ProtocolFault::Truncated => "truncated body",
            ProtocolFault::WrongContentType => "unexpected content type",
            ProtocolFault::Oversized => "body larger than the configured maximum",
        })
    }
}

/// A failed connector call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed ({kind}{}{}){}: {detail}",
    status.map(|s| format!(", HTTP {s}")).unwrap_or_default(),
    code.as_ref().map(|c| format!(", code {c}")).unwrap_or_default(),
    subject.as_ref().map(|s| format!(" for {s}")).unwrap_or_default())]
pub struct UcsError {
    /// Which operation failed.
    pub operation: Operation,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// The server's error code (letters, digits, `_`, `-`, `.` only), when it gave one.
    pub code: Option<String>,
    /// The server's name, when it gave one (sanitised like `code`).
    pub server: Option<String>,
    /// The id the call was about, when there is one (ids are not personal data).
    pub subject: Option<String>,
    /// For protocol errors, what was wrong.
    pub protocol: Option<ProtocolFault>,
    /// How many attempts were made before giving up.
    pub attempts: u32,
    /// A short, fixed description (never server text).
    pub detail: String,
}

impl UcsError {
    pub(crate) fn new(operation: Operation, kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            operation,
            kind,
            status: None,
            code: None,
            server: None,
            subject: None,
            protocol: None,
            attempts: 1,
            detail: detail.into(),
        }
    }

    pub(crate) fn protocol(operation: Operation, fault: ProtocolFault) -> Self {
        let mut error = Self::new(operation, ErrorKind::Protocol, fault.to_string());
        error.protocol = Some(fault);
        error
    }

    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub(crate) fn with_code(mut self, code: Option<&str>) -> Self {
        self.code = code.map(sanitise_code);
        self
    }

    pub(crate) fn with_server(mut self, server: Option<&str>) -> Self {
        self.server = server.map(sanitise_code);
        self
    }

    pub(crate) fn with_subject(mut self, subject: Option<&str>) -> Self {
        self.subject = subject.map(str::to_owned);
        self
    }

    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
}

/// Keeps an error code to a short token: a server that puts a message in its code field must not
/// get personal data into our errors.
pub(crate) fn sanitise_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(48)
        .collect()
}
