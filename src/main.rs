//! The `ucs-gdpr` command: a thin shell over the library.

fn main() -> std::process::ExitCode {
    ucs_gdpr::cli::main()
}
