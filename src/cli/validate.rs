//! `ucs-gdpr validate` and `ucs-gdpr schema`.

use std::path::PathBuf;

use super::{Exit, Format};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files or directories (walked for *.yaml and *.yml).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// How to print the diagnostics.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub(crate) struct SchemaArgs {}

pub(crate) fn run(args: &Args) -> Exit {
    let _ = (&args.paths, args.format);
    Exit::Success
}

pub(crate) fn schema(args: &SchemaArgs) -> Exit {
    let _ = args;
    Exit::Success
}
