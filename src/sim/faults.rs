//! Fault injection: latency, 5xx, never-answered calls, dropped connections and scripted
//! failures, all deterministic for a seed; and the per-operation call counts of `/sim/stats`.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::ucs::rng::SplitMix64;
use crate::ucs::wire::Operation;

/// How a call is made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// HTTP 503 (transient).
    Unavailable,
    /// HTTP 500 (permanent).
    Permanent,
    /// Never answers (until the simulator stops).
    Timeout,
    /// Drops the connection without an answer.
    Reset,
    /// HTTP 200 with a JSON content type and a body that is not JSON.
    Garbage,
    /// HTTP 200 whose body stops half-way.
    Truncated,
    /// HTTP 500 after doing part of the work: a `DeleteContact` deletes the first half of the
    /// contact's interactions (by id, rounded up, with their documents) and leaves the rest and
    /// the contact, as a delete that stopped half way would; any other operation does all its
    /// work, then answers 500.
    Halfway,
}

impl FaultKind {
    fn as_str(self) -> &'static str {
        match self {
            FaultKind::Unavailable => "unavailable",
            FaultKind::Permanent => "permanent",
            FaultKind::Timeout => "timeout",
            FaultKind::Reset => "reset",
            FaultKind::Garbage => "garbage",
            FaultKind::Truncated => "truncated",
            FaultKind::Halfway => "halfway",
        }
    }
}

/// "Fail the `nth` call of `operation` with `kind`", counting from when the script is installed
/// (from the start, for scripts in [`FaultOptions`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedFault {
    /// The operation.
    pub operation: Operation,
    /// Which call (1 = the next one).
    pub nth: u64,
    /// How it fails.
    pub kind: FaultKind,
}

/// "Fail the `nth` call of `operation` about `contact` with `kind`": the calls that name the
/// contact (its `ContactId` parameter, or its id in a Context Services profile or customer
/// path) are counted apart from the calls about other contacts, from the start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactFault {
    /// The contact id.
    pub contact: String,
    /// The operation.
    pub operation: Operation,
    /// Which call about the contact (1 = the first).
    pub nth: u64,
    /// How it fails.
    pub kind: FaultKind,
}

/// Random and scripted faults.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultOptions {
    /// Seed of every random choice.
    pub seed: u64,
    /// Latency added to every call.
    pub latency: Duration,
    /// Extra latency, uniform in `[0, jitter]`.
    pub jitter: Duration,
    /// Share of calls answered 503.
    pub error_rate: f64,
    /// Share of calls never answered.
    pub timeout_rate: f64,
    /// Share of calls whose connection is dropped.
    pub reset_rate: f64,
    /// Scripted failures.
    pub script: Vec<ScriptedFault>,
    /// Scripted failures of the calls about one contact.
    pub contact_script: Vec<ContactFault>,
}

impl Default for FaultOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            error_rate: 0.0,
            timeout_rate: 0.0,
            reset_rate: 0.0,
            script: Vec::new(),
            contact_script: Vec::new(),
        }
    }
}

/// What the simulator has been asked, per operation, which faults it injected, and the
/// conformance journal (see [`super::Conformance`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Calls per operation name (every call, faulted or not).
    pub calls: BTreeMap<String, u64>,
    /// Injected faults per kind.
    pub faults: BTreeMap<String, u64>,
    /// Every kind of non-conforming request (operation, what was wrong, how often).
    #[serde(default)]
    pub non_conforming: Vec<super::conformance::NonConformity>,
    /// Documented but dangerous requests (an `IdentifyContact` that may create a contact).
    #[serde(default)]
    pub dangerous: Vec<super::conformance::NonConformity>,
    /// Contacts created by `IdentifyContact`.
    #[serde(default)]
    pub contacts_created: u64,
    /// The most calls the simulator was answering at once (its own `/sim/...` calls left out).
    #[serde(default)]
    pub peak_in_flight: u64,
}

impl Stats {
    /// Calls of `operation` so far.
    pub fn calls(&self, operation: Operation) -> u64 {
        self.calls.get(operation.as_str()).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
struct Counters {
    calls: HashMap<Operation, u64>,
    faults: HashMap<FaultKind, u64>,
    /// (operation, absolute call number) -> fault.
    script: HashMap<(Operation, u64), FaultKind>,
    /// Calls per (operation, contact), for the scripts that name a contact.
    contact_calls: HashMap<(Operation, String), u64>,
    /// (operation, contact, call number about it) -> fault.
    contact_script: HashMap<(Operation, String, u64), FaultKind>,
}

impl Counters {
    fn install(&mut self, fault: &ScriptedFault) {
        let now = self.calls.get(&fault.operation).copied().unwrap_or(0);
        self.script.insert((fault.operation, now + fault.nth), fault.kind);
    }
}

/// The running fault injector.
#[derive(Debug)]
pub(crate) struct Faults {
    options: FaultOptions,
    rng: SplitMix64,
    counters: Mutex<Counters>,
    timer: Option<PreciseTimer>,
}

/// What to do with a call, decided when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) delay: Duration,
    pub(crate) fault: Option<FaultKind>,
}

impl Faults {
    pub(crate) fn new(options: FaultOptions) -> Self {
        let timer =
            (!options.latency.is_zero() || !options.jitter.is_zero()).then(PreciseTimer::start);
        let mut counters = Counters::default();
        for fault in &options.script {
            counters.install(fault);
        }
        for fault in &options.contact_script {
            counters
                .contact_script
                .insert((fault.operation, fault.contact.clone(), fault.nth), fault.kind);
        }
        Self { rng: SplitMix64::new(options.seed), options, counters: Mutex::new(counters), timer }
    }

    /// Counts a call (about `contact`, when it names one) and decides its fate.
    pub(crate) fn arrive(&self, operation: Operation, contact: Option<&str>) -> Decision {
        let mut counters = match self.counters.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let count = counters.calls.entry(operation).or_insert(0);
        *count += 1;
        let number = *count;
        let mut scripted = counters.script.remove(&(operation, number));
        // Counted only while a script names the contact and the operation (a run over 100,000
        // contacts keeps no count per contact).
        if let Some(contact) = contact.filter(|contact| {
            counters.contact_script.keys().any(|(op, c, _)| *op == operation && c == contact)
        }) {
            let count = counters.contact_calls.entry((operation, contact.to_owned())).or_insert(0);
            *count += 1;
            let number = *count;
            let about = counters.contact_script.remove(&(operation, contact.to_owned(), number));
            scripted = scripted.or(about);
        }
        let options = &self.options;
        let fault = scripted.or_else(|| {
            let draw = self.rng.next_f64();
            let mut threshold = options.error_rate;
            if draw < threshold {
                return Some(FaultKind::Unavailable);
            }
            threshold += options.timeout_rate;
            if draw < threshold {
                return Some(FaultKind::Timeout);
            }
            threshold += options.reset_rate;
            (draw < threshold).then_some(FaultKind::Reset)
        });
        if let Some(kind) = fault {
            *counters.faults.entry(kind).or_insert(0) += 1;
        }
        let jitter = u64::try_from(options.jitter.as_nanos()).unwrap_or(u64::MAX);
        let extra = if jitter == 0 { 0 } else { self.rng.up_to(jitter) };
        Decision { delay: options.latency + Duration::from_nanos(extra), fault }
    }

    /// Installs scripted faults, counting `nth` from now.
    pub(crate) fn script(&self, faults: &[ScriptedFault]) {
        let mut counters = match self.counters.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        for fault in faults {
            counters.install(fault);
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let counters = match self.counters.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        Stats {
            calls: counters.calls.iter().map(|(op, n)| (op.as_str().to_owned(), *n)).collect(),
            faults: counters.faults.iter().map(|(k, n)| (k.as_str().to_owned(), *n)).collect(),
            non_conforming: Vec::new(),
            dangerous: Vec::new(),
            contacts_created: 0,
            peak_in_flight: 0,
        }
    }

    /// Waits `delay`, precisely: tokio's timer rounds up to the next millisecond, which would
    /// turn an injected 2 ms into 2 to 3 ms and skew every latency-bound measurement.
    pub(crate) async fn wait_until(&self, at: Instant) {
        let Some(delay) = at.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            return;
        };
        match &self.timer {
            Some(timer) => timer.sleep(delay).await,
            None => tokio::time::sleep(delay).await,
        }
    }
}

/// A timer thread with sub-millisecond precision, shared by all calls.
#[derive(Debug)]
struct PreciseTimer {
    requests: Mutex<mpsc::Sender<(Instant, oneshot::Sender<()>)>>,
}

struct Due(Instant, oneshot::Sender<()>);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Earliest first in a max-heap.
        other.0.cmp(&self.0)
    }
}

impl PreciseTimer {
    fn start() -> Self {
        let (sender, receiver) = mpsc::channel::<(Instant, oneshot::Sender<()>)>();
        // The thread ends when the sender is dropped with the simulator.
        let _ = std::thread::Builder::new().name("sim-timer".to_owned()).spawn(move || {
            let mut heap = BinaryHeap::new();
            loop {
                let now = Instant::now();
                while heap.peek().is_some_and(|Due(at, _)| *at <= now) {
                    if let Some(Due(_, done)) = heap.pop() {
                        let _ = done.send(());
                    }
                }
                let next = match heap.peek() {
                    Some(Due(at, _)) => receiver.recv_timeout(at.saturating_duration_since(now)),
                    None => receiver.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                };
                match next {
                    Ok((at, done)) => heap.push(Due(at, done)),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        Self { requests: Mutex::new(sender) }
    }

    async fn sleep(&self, delay: Duration) {
        let (done, wait) = oneshot::channel();
        let sent = self
            .requests
            .lock()
            .map(|sender| sender.send((Instant::now() + delay, done)).is_ok())
            .unwrap_or(false);
        if !sent || wait.await.is_err() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// The simulator's listener: plain TCP, with a kill switch per connection so a handler can
/// drop its own connection (the reset fault).
#[derive(Debug)]
pub(crate) struct SimListener {
    pub(crate) inner: TcpListener,
}

impl Listener for SimListener {
    type Io = SimStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (SimStream { inner: stream, kill: ConnectionKill::default() }, addr);
                }
                // Out of file descriptors and the like: wait a little and keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection's kill switch, given to handlers as connect info.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionKill(Arc<AtomicBool>);

impl ConnectionKill {
    /// Makes every further read and write of the connection fail, so it is dropped unanswered.
    pub(crate) fn kill(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn killed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnectionKill {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.io().kill.clone()
    }
}

/// A TCP stream that fails once killed.
#[derive(Debug)]
pub(crate) struct SimStream {
    inner: TcpStream,
    kill: ConnectionKill,
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection dropped by fault injection")
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
