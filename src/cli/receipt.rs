//! `ucs-gdpr receipt merge`: one receipt for a plan run in shards.

use std::path::{Path, PathBuf};

use super::Exit;
use super::failure::Failure;
use crate::apply::receipt::{MergeError, merge_shards};
use crate::plan::{Plan, PlanFile};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Merge the shards' parts of a sharded run into one receipt; refuses when a shard is
    /// missing, given twice, or incomplete.
    #[command(after_long_help = EXAMPLES_MERGE)]
    Merge(MergeArgs),
}

const EXAMPLES_MERGE: &str = "\
Examples:
  ucs-gdpr receipt merge plan.json --env-file ucs-gdpr.yaml     # finds exports/<request>.shard-*
  ucs-gdpr receipt merge plan.json parts/*/DSR-2026-0151 --out receipt.json";

#[derive(Debug, clap::Args)]
pub(crate) struct MergeArgs {
    /// The plan the shards ran (`plan.json`).
    plan: PathBuf,
    /// The shards' export bags (each `<request>.shard-I-of-N/<request>`, or the
    /// `<request>.shard-I-of-N` folder holding it). Default: every
    /// `<request>.shard-*` folder in the environment's exports folder.
    bags: Vec<PathBuf>,
    /// The environments file, for the exports folder (default: ./ucs-gdpr.yaml).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Where to write the merged receipt (default: `<exports>/<request>.receipt.json`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub(crate) fn run(command: &Command) -> Result<Exit, Failure> {
    match command {
        Command::Merge(args) => merge(args),
    }
}

/// The environment's exports folder, from the environments file.
fn exports_dir(plan: &Plan, env_file: Option<&Path>) -> Result<PathBuf, Failure> {
    let path = env_file.map_or_else(|| PathBuf::from("ucs-gdpr.yaml"), Path::to_path_buf);
    let environments = match crate::environment::Environments::load(&path) {
        Ok((environments, _)) => environments,
        Err(_) => {
            return Err(Failure::new(format!(
                "cannot read the environments file `{}` (run `ucs-gdpr validate {0}`), or name \
                 the bags and --out",
                path.display()
            )));
        }
    };
    let name = &plan.body.environment.name;
    let environment = environments.get(name).ok_or_else(|| {
        Failure::new(format!("environment `{name}` is not in `{}`", path.display()))
    })?;
    let exports = environment
        .policy
        .exports
        .clone()
        .unwrap_or_else(|| crate::apply::gate::DEFAULT_EXPORTS.into());
    Ok(environments.base_dir.join(exports))
}

/// The bag inside a `<request>.shard-I-of-N` folder, or the folder itself when it is a bag.
fn bag_in(folder: &Path, request: &str) -> PathBuf {
    if folder.join("bagit.txt").is_file() { folder.to_path_buf() } else { folder.join(request) }
}

fn merge(args: &MergeArgs) -> Result<Exit, Failure> {
    // The plan is read as a stream: its head, and its contacts' ids one line at a time (each
    // line checked against the header as `Plan::from_json` checks it).
    std::fs::File::open(&args.plan)
        .map_err(|e| Failure::new(format!("cannot read `{}`: {e}", args.plan.display())))?;
    let in_plan = |e: String| Failure::new(format!("`{}`: {e}", args.plan.display()));
    let file = PlanFile::open(&args.plan).map_err(in_plan)?;
    let mut ids = Vec::new();
    for contact in file.contacts().map_err(in_plan)? {
        ids.push(contact.map_err(in_plan)?.0.contact_id.as_str().to_owned());
    }
    let plan = file.head();
    let request = plan.body.request.id.clone();
    let needs_exports = args.bags.is_empty() || args.out.is_none();
    let exports =
        if needs_exports { Some(exports_dir(plan, args.env_file.as_deref())?) } else { None };
    let bags: Vec<PathBuf> = if args.bags.is_empty() {
        let exports = exports.clone().unwrap_or_default();
        let prefix = format!("{request}.shard-");
        let mut found = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&exports) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix)
                    && crate::shard::Shard::from_label(name.get(request.len() + 1..).unwrap_or(""))
                        .is_some()
                {
                    found.push(bag_in(&entry.path(), &request));
                }
            }
        }
        found.sort();
        found
    } else {
        args.bags.iter().map(|b| bag_in(b, &request)).collect()
    };
    let out = match (&args.out, &exports) {
        (Some(out), _) => out.clone(),
        (None, Some(exports)) => exports.join(format!("{request}.receipt.json")),
        (None, None) => PathBuf::from(format!("{request}.receipt.json")),
    };
    // The merge spools the contacts beside the receipt it writes (hidden temporary files).
    let spool_dir = crate::durable::parent_dir(&out);
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let merged = merge_shards(plan, &ids, &bags, &spool_dir).map_err(|error| {
        let failure = Failure::new(format!("cannot merge the shards' receipts: {error}"));
        match error {
            MergeError::Missing { .. } | MergeError::Incomplete { .. } | MergeError::NoParts => {
                failure.hint(
                    "run the missing or incomplete shard (`ucs-gdpr apply plan.json \
                              --shard I/N`; a shard resumes where it stopped), then merge again",
                )
            }
            _ => failure,
        }
    })?;
    crate::durable::write_atomically_with(&out, |file| merged.write_json(file))
        .map_err(|error| Failure::new(format!("cannot write `{}`: {error}", out.display())))?;
    print!("{}", merged.text());
    println!("merged receipt: {}", out.display());
    Ok(if merged.succeeded() { Exit::Success } else { Exit::Failure })
}
