//! `ucs-gdpr`: a declarative, auditable runbook engine for GDPR requests against Genesys
//! Universal Contact Server.
//!
//! Data flows one way, `manifest -> plan -> apply`, and every file is read through
//! [`document`] (YAML with spans, diagnostics, schemas), which imports nothing above it; `ucs` talks to the server, `export` writes
//! the packages, `audit` keeps the tamper-evident trail and `sim` is a UCS to rehearse against.
//! Nothing below [`cli`] prints.

pub mod apply;
pub mod audit;
pub mod canonical;
#[cfg(feature = "cli")]
pub mod cli;
pub mod document;
pub mod durable;
pub mod environment;
pub mod export;
pub mod infomart;
pub mod manifest;
pub mod plan;
pub mod register;
pub mod runbook;
pub mod session;
pub mod shard;
pub mod sim;
pub mod ucs;
pub mod validate;
