//! How results reach the terminal: output formats and miette's report handler.

use std::io::IsTerminal;

/// The output format of commands that can speak to people or to pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Format {
    /// For a person at a terminal.
    #[default]
    Text,
    /// One JSON document on stdout, for pipelines and CI annotations.
    Json,
}

/// miette's graphical handler: colour and unicode on a terminal, plain otherwise.
fn handler() -> miette::GraphicalReportHandler {
    let theme = if stderr_is_colour_terminal() {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    miette::GraphicalReportHandler::new_themed(theme).with_width(100)
}

fn stderr_is_colour_terminal() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Renders one diagnostic with its source line, for stderr.
pub(crate) fn diagnostic(diagnostic: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    if handler().render_report(&mut out, diagnostic).is_err() {
        out = format!("{diagnostic}\n");
    }
    out
}

/// Sets miette's report handler: colour and unicode on a terminal, plain and stable otherwise
/// (so logs, CI output and snapshot tests do not depend on the terminal).
pub(crate) fn install_miette_hook() {
    // The hook can only be set once per process; a second call is harmless.
    let _ = miette::set_hook(Box::new(|_| Box::new(handler())));
}
