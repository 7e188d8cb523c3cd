//! A UCS simulator: an HTTP server over an embedded database, for the demo, rehearsal and tests.
//!
//! It serves UCS 9.1's REST methods as Genesys documents them, not as our client calls them
//! (`ucs_api`: verbs, parameter names, mandatory parameters, `FaultCode`/`FaultString` faults,
//! IdentifyContact's default of creating a contact), over SQLite seeded from a [`Dataset`];
//! every non-conforming request is journaled ([`Conformance`], [`RunningSim::conformance`]),
//! faults are injected deterministically ([`FaultOptions`]) and every call is counted
//! ([`Stats`]). [`Simulator::start`] runs it in-process on a loopback port: what an
//! environment of `type: embedded` and the tests use, with the real [`crate::ucs::RestClient`]
//! pointed at [`RunningSim::base_url`].

mod conformance;
mod dataset;
mod faults;
mod generate;
mod server;
mod services;
mod store;
mod ucs_api;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use conformance::{Conformance, NonConformity, UcsFault};
pub use dataset::{
    DEFAULT_SELECT_LIMIT, Dataset, DatasetAttachment, DatasetCallback, DatasetContact,
    DatasetError, DatasetInteraction, DatasetInteractions, DatasetService, OneOrMany,
};
pub use faults::{ContactFault, FaultKind, FaultOptions, ScriptedFault, Stats};
pub use generate::{GenerateError, GenerateOptions, generate};
pub use store::StoreError;

use faults::{ConnectionKill, Faults, SimListener};
use server::SimState;
use store::Store;

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The dataset file (JSON, or YAML by extension).
    pub dataset: PathBuf,
    /// Where the databases live, kept across restarts; `None`: a fresh temporary folder,
    /// removed when the simulator stops.
    pub state_dir: Option<PathBuf>,
    /// The address to bind (default `127.0.0.1:0`, loopback on a free port).
    pub listen: SocketAddr,
    /// Faults to inject.
    pub faults: FaultOptions,
}

impl SimOptions {
    /// A simulator of `dataset` on a free loopback port, fresh state, no faults.
    pub fn new(dataset: impl Into<PathBuf>) -> Self {
        Self {
            dataset: dataset.into(),
            state_dir: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            faults: FaultOptions::default(),
        }
    }
}

/// A simulator that could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The dataset is unusable.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The databases could not be created or seeded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state folder could not be created.
    #[error("cannot create the simulator's state folder {path}: {source}")]
    StateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Seeding panicked or was cancelled.
    #[error("the simulator's setup task failed")]
    Setup,
}

/// The simulator's entry point.
#[derive(Debug, Clone, Copy)]
pub struct Simulator;

impl Simulator {
    /// Loads the dataset, creates (or reopens) the databases and serves them on
    /// `options.listen`. Must be called within a tokio runtime; the server runs
    /// on it until [`RunningSim::shutdown`] or drop.
    pub async fn start(options: SimOptions) -> Result<RunningSim, SimError> {
        let (state_dir, temporary) = match &options.state_dir {
            Some(dir) => {
                crate::durable::create_private_dir_all(dir)
                    .map_err(|source| SimError::StateDir { path: dir.clone(), source })?;
                (dir.clone(), None)
            }
            None => {
                let dir = TempDir::create()?;
                (dir.path.clone(), Some(dir))
            }
        };
        let dataset_path = options.dataset.clone();
        let dir = state_dir.clone();
        let (store, server, ucs_version, select_limit) = tokio::task::spawn_blocking(move || {
            let dataset = Dataset::load(&dataset_path)?;
            let store = Store::open(&dir, &dataset, &dataset_path)?;
            Ok::<_, SimError>((store, dataset.server, dataset.ucs_version, dataset.select_limit))
        })
        .await
        .map_err(|_| SimError::Setup)??;
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| SimError::Bind { address: options.listen, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| SimError::Bind { address: options.listen, source })?;
        let shutdown = CancellationToken::new();
        let state = Arc::new(SimState {
            store: Arc::new(store),
            faults: Faults::new(options.faults),
            journal: conformance::Journal::default(),
            select_limit,
            server,
            shutdown: shutdown.clone(),
            in_flight: server::InFlight::default(),
        });
        let app =
            server::router(state.clone()).into_make_service_with_connect_info::<ConnectionKill>();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(SimListener { inner: listener }, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the simulator stopped serving");
            }
        });
        tracing::info!(%address, state = %state_dir.display(), "simulator listening");
        Ok(RunningSim {
            address,
            state,
            shutdown,
            task: Some(task),
            state_dir,
            ucs_version,
            _temporary: temporary,
        })
    }
}

/// A running simulator. Dropping it stops the server (without waiting); prefer
/// [`RunningSim::shutdown`] to wait for in-flight calls.
#[derive(Debug)]
pub struct RunningSim {
    address: SocketAddr,
    state: Arc<SimState>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    state_dir: PathBuf,
    ucs_version: crate::ucs::UcsVersion,
    _temporary: Option<TempDir>,
}

impl RunningSim {
    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The UCS version its dataset simulates (`ucsVersion`).
    pub fn ucs_version(&self) -> crate::ucs::UcsVersion {
        self.ucs_version
    }

    /// `http://<address>`: the base URL of UCS, Context Services and GMS alike.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The folder holding its databases.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Calls per operation, injected faults and the conformance journal so far.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// The conformance journal: every non-conforming request so far and the contacts
    /// identification created. A test of a conforming client asserts
    /// [`Conformance::is_clean`].
    pub fn conformance(&self) -> Conformance {
        self.state.journal.snapshot()
    }

    /// Adds scripted faults, counting `nth` from now.
    pub fn script_faults(&self, faults: &[ScriptedFault]) {
        self.state.faults.script(faults);
    }

    /// Stops accepting calls, answers the calls in flight (a never-answered one gets a 503) and
    /// waits for the server to finish.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the server stops (after [`RunningSim::stop_handle`] is cancelled).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// A token that stops the server when cancelled (for Ctrl-C handling).
    pub fn stop_handle(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A temporary state folder, removed on drop.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn create() -> Result<Self, SimError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last = None;
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("ucs-gdpr-sim-{}-{nanos:x}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(source) => last = Some((path, source)),
            }
        }
        let (path, source) =
            last.unwrap_or_else(|| (base, std::io::Error::other("no attempt made")));
        Err(SimError::StateDir { path, source })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
