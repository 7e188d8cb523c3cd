//! `ucs-gdpr sim`: serve and generate.

use super::Exit;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {}

pub(crate) fn run(command: &Command) -> Exit {
    match *command {}
}
