//! `ucs-gdpr completions SHELL` and `ucs-gdpr man`: generated from the clap definitions, so
//! they never drift from the commands.

use clap::CommandFactory as _;

use super::failure::Failure;
use super::{Cli, Exit};

#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// Write one page per command (`ucs-gdpr.1`, `ucs-gdpr-plan.1`, ...) into this folder
    /// instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    out: Option<std::path::PathBuf>,
}

/// Prints the completion script for `shell` on stdout.
pub(crate) fn completions(args: &CompletionsArgs) -> Result<Exit, Failure> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "ucs-gdpr", &mut out);
    print!("{}", String::from_utf8_lossy(&out));
    Ok(Exit::Success)
}

/// Prints the man page (roff) on stdout, or writes every command's page into `--out`.
pub(crate) fn man(args: &ManArgs) -> Result<Exit, Failure> {
    let command = Cli::command();
    match &args.out {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command).render(&mut out).map_err(|error| {
                Failure::internal(format!("cannot render the man page: {error}"))
            })?;
            print!("{}", String::from_utf8_lossy(&out));
            Ok(Exit::Success)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(command, dir))
                .map_err(|error| {
                    Failure::new(format!(
                        "cannot write the man pages into `{}`: {error}",
                        dir.display()
                    ))
                })?;
            Ok(Exit::Success)
        }
    }
}
