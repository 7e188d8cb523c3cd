//! How a command that could not do its job says so. Every command returns
//! `Result<Exit, Failure>`; [`super::main`] renders a [`Failure`] once, in one form, and exits
//! with its status:
//!
//! ```text
//! error: what went wrong (with its causes, `: `-joined)
//!   - a detail, one per line (what changed, what differs)
//! hint: what to do about it
//! ```
//!
//! The mapping of the library's errors to messages, hints and exit statuses lives here too
//! (`From<&ApplyError>`), so every front end of the CLI says the same thing for the same error.
//! Messages carry ids, paths, codes and counts, never personal data: they come from the
//! library's errors, which hold none.

use crate::apply::ApplyError;

use super::Exit;
use super::progress;

/// A command's failure: a message, details, a hint and the exit status.
#[derive(Debug)]
pub(crate) struct Failure {
    message: Option<String>,
    details: Vec<String>,
    hint: Option<String>,
    exit: Exit,
}

impl Failure {
    /// A failure (exit 1).
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { message: Some(message.into()), details: Vec::new(), hint: None, exit: Exit::Failure }
    }

    /// A mistake in how the command was called (exit 64).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self { exit: Exit::Usage, ..Self::new(message) }
    }

    /// Something this tool itself could not do: a runtime, a simulator that saw a request
    /// Genesys would refuse (exit 70).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self { exit: Exit::Internal, ..Self::new(message) }
    }

    /// `what: ` and the error with its causes.
    pub(crate) fn caused(what: impl std::fmt::Display, error: &dyn std::error::Error) -> Self {
        Self::new(format!("{what}: {}", chain(error)))
    }

    /// A failure whose reasons were printed already, as located diagnostics of the files
    /// (exit 1, nothing more to say).
    pub(crate) fn reported() -> Self {
        Self { message: None, details: Vec::new(), hint: None, exit: Exit::Failure }
    }

    /// Whether its reasons were printed already ([`Failure::reported`]).
    pub(crate) fn is_reported(&self) -> bool {
        self.message.is_none() && self.details.is_empty() && self.hint.is_none()
    }

    /// With what to do about it.
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// With one line per detail.
    pub(crate) fn details(mut self, details: impl IntoIterator<Item = String>) -> Self {
        self.details.extend(details);
        self
    }

    /// The text printed for it (empty for [`Failure::reported`]).
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        if let Some(message) = &self.message {
            out.push_str(&format!("error: {message}\n"));
        }
        for detail in &self.details {
            out.push_str(&format!("  - {detail}\n"));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("hint: {hint}\n"));
        }
        out
    }

    /// Prints it on stderr (above any progress bar) and gives its exit status.
    pub(crate) fn report(&self) -> Exit {
        let text = self.text();
        if !text.is_empty() {
            progress::eprintln(text.trim_end_matches('\n'));
        }
        self.exit
    }
}

impl From<&ApplyError> for Failure {
    fn from(error: &ApplyError) -> Self {
        match error {
            ApplyError::Stale(changes) => Failure::new(
                "the plan is stale; nothing was changed. What changed since it was made:",
            )
            .details(changes.iter().cloned())
            .hint("run `ucs-gdpr plan` again and have the new plan approved"),
            ApplyError::Mismatch(edits) => Failure::new(
                "the plan does not match what planning again from the manifest, the runbook, the \
                 policy and the live state gives; nothing was changed. What differs:",
            )
            .details(edits.iter().cloned())
            .hint(
                "the plan file was edited after it was made, or made with other inputs; run \
                 `ucs-gdpr plan` again and have the new plan approved",
            ),
            ApplyError::Unreachable(_) => Failure::new(chain(error)).hint(
                "nothing is known to have changed since the plan was made; run the same command \
                 again when UCS answers",
            ),
            error => Failure::new(chain(error)),
        }
    }
}

impl From<ApplyError> for Failure {
    fn from(error: ApplyError) -> Self {
        Self::from(&error)
    }
}

/// An error and its causes on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_reads_error_details_hint_in_that_order() {
        let failure = Failure::new("the plan is stale")
            .details(["contact 0001SaD2PVY4312K is gone".to_owned()])
            .hint("plan again");
        assert_eq!(
            failure.text(),
            "error: the plan is stale\n  - contact 0001SaD2PVY4312K is gone\nhint: plan again\n"
        );
        assert_eq!(failure.exit, Exit::Failure);
        assert_eq!(Failure::usage("x").exit, Exit::Usage);
        assert_eq!(Failure::internal("x").exit, Exit::Internal);
        assert_eq!(Failure::reported().text(), "");
    }
}
