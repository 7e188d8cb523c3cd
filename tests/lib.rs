//! The integration tests: one binary that runs the real `ucs-gdpr` executable and the library
//! against the real simulator, one module per area.

mod audit;
mod sim;
mod ucs;
mod validate;
