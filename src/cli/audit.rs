//! `ucs-gdpr audit`: verify, show, keygen.

use super::Exit;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {}

pub(crate) fn run(command: &Command) -> Exit {
    match *command {}
}
