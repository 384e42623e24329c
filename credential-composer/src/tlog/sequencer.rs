//! Group commit: concurrent appends share one fsync and one checkpoint signature.
//!
//! One thread owns the log: a [`Log`] directory or a [`super::PgLog`] (any [`LogBackend`]). Callers queue entries; the thread takes the first, then waits up to
//! `max_wait` (or until `max_batch` entries) for more, appends them as one batch and answers each caller
//! with its index, the new checkpoint and its inclusion proof. While a batch is being fsynced the next
//! one queues up, so under load batches grow by themselves even with `max_wait` = 0.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::backend::LogBackend;
use super::log::{Appended, Log};
use super::storage::MAX_ENTRY_SIZE;
use super::TlogError;

/// Batching limits.
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Most entries in one batch (one fsync, one signature).
    pub max_batch: usize,
    /// Longest a batch waits for more entries after its first. The spec's bound is 1 s. Default 0: a
    /// batch is what queued while the previous one was made durable (group commit), so a lone
    /// credential waits for no one (measured: 1 ms of 2.3 ms per append at 1 ms) and batches still grow
    /// under load.
    pub max_wait: Duration,
    /// Most entries waiting; past it appends fail at once with [`TlogError::Overloaded`] (fail closed
    /// rather than queue without bound).
    pub max_queue: usize,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            max_wait: Duration::ZERO,
            max_queue: 65_536,
        }
    }
}

struct Job {
    entry: Vec<u8>,
    reply: oneshot::Sender<Result<Appended, TlogError>>,
}

/// The batching front of a log ([`Log`] or any [`LogBackend`]). Cheap to share (`Arc<Sequencer>`); `append` is async,
/// `append_blocking` is for threads outside an async runtime.
pub struct Sequencer {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    queued: Arc<AtomicUsize>,
    config: SequencerConfig,
    thread: Mutex<Option<JoinHandle<Box<dyn LogBackend>>>>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Sequencer {
    /// Starts the sequencer thread, which owns `log` until [`Sequencer::shutdown`].
    ///
    /// # Errors
    /// [`TlogError::Io`] if the thread cannot be spawned.
    pub fn start(log: Log, config: SequencerConfig) -> Result<Self, TlogError> {
        Self::start_backend(Box::new(log), config)
    }

    /// Starts the sequencer over any log backend, e.g. a [`super::PgLog`] shared by HA servers (each
    /// replica runs its own sequencer; the database lets one batch in at a time).
    ///
    /// # Errors
    /// [`TlogError::Io`] if the thread cannot be spawned.
    pub fn start_backend(
        log: Box<dyn LogBackend>,
        config: SequencerConfig,
    ) -> Result<Self, TlogError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let queued = Arc::new(AtomicUsize::new(0));
        let thread_queued = Arc::clone(&queued);
        let thread_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("tlog-sequencer".into())
            .spawn(move || run(log, &rx, &thread_queued, &thread_config))
            .map_err(|e| TlogError::io("spawn", "tlog-sequencer", e))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            queued,
            config,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Appends one entry; resolves once it is durable, with its index and inclusion proof.
    ///
    /// # Errors
    /// [`TlogError::EntrySize`], [`TlogError::Overloaded`], [`TlogError::SequencerStopped`], or
    /// [`TlogError::Batch`] carrying the failure of the batch the entry was in.
    pub async fn append(&self, entry: Vec<u8>) -> Result<Appended, TlogError> {
        let rx = self.submit(entry)?;
        rx.await.map_err(|_| TlogError::SequencerStopped)?
    }

    /// [`Sequencer::append`] for plain threads (e.g. inside `spawn_blocking`). Must not be called on an
    /// async runtime's worker thread: it blocks.
    ///
    /// # Errors
    /// As [`Sequencer::append`].
    pub fn append_blocking(&self, entry: Vec<u8>) -> Result<Appended, TlogError> {
        let rx = self.submit(entry)?;
        rx.blocking_recv()
            .map_err(|_| TlogError::SequencerStopped)?
    }

    /// Entries queued and not yet answered.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn submit(
        &self,
        entry: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<Appended, TlogError>>, TlogError> {
        if entry.len() > MAX_ENTRY_SIZE {
            return Err(TlogError::EntrySize {
                position: 0,
                len: entry.len(),
                max: MAX_ENTRY_SIZE,
            });
        }
        let guard = self.tx.lock().map_err(|_| TlogError::SequencerStopped)?;
        let tx = guard.as_ref().ok_or(TlogError::SequencerStopped)?;
        let queued = self.queued.fetch_add(1, Ordering::AcqRel);
        if queued >= self.config.max_queue {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(TlogError::Overloaded {
                queued,
                limit: self.config.max_queue,
            });
        }
        let (reply, rx) = oneshot::channel();
        if tx.send(Job { entry, reply }).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(TlogError::SequencerStopped);
        }
        Ok(rx)
    }

    /// Stops taking entries, finishes those queued, and gives the file log back.
    ///
    /// # Errors
    /// [`TlogError::SequencerStopped`] if the thread panicked or was already shut down,
    /// [`TlogError::WrongBackend`] if the log is not a directory (use
    /// [`Sequencer::shutdown_backend`]).
    pub fn shutdown(&self) -> Result<Log, TlogError> {
        let backend = self.shutdown_backend()?;
        let got = backend.kind();
        backend.into_file_log().ok_or(TlogError::WrongBackend {
            want: "directory",
            got,
        })
    }

    /// Stops taking entries, finishes those queued, and gives the log back, whatever its kind.
    ///
    /// # Errors
    /// [`TlogError::SequencerStopped`] if the thread panicked or was already shut down.
    pub fn shutdown_backend(&self) -> Result<Box<dyn LogBackend>, TlogError> {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self
            .thread
            .lock()
            .ok()
            .and_then(|mut t| t.take())
            .ok_or(TlogError::SequencerStopped)?;
        handle.join().map_err(|_| TlogError::SequencerStopped)
    }
}

impl Drop for Sequencer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn run(
    mut log: Box<dyn LogBackend>,
    rx: &mpsc::Receiver<Job>,
    queued: &AtomicUsize,
    config: &SequencerConfig,
) -> Box<dyn LogBackend> {
    let max_batch = config.max_batch.max(1);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + config.max_wait;
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    batch.push(job);
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::AcqRel);
        commit(log.as_mut(), batch);
    }
    log
}

fn commit(log: &mut dyn LogBackend, batch: Vec<Job>) {
    let (entries, replies): (Vec<Vec<u8>>, Vec<_>) =
        batch.into_iter().map(|j| (j.entry, j.reply)).unzip();
    let mut result = log.append_batch(&entries);
    if matches!(result, Err(TlogError::Poisoned)) {
        // An earlier batch failed half-way; bring the storage back to the checkpoint and retry once.
        result = log.recover().and_then(|()| log.append_batch(&entries));
    }
    match result {
        Ok(appended) => {
            for (reply, a) in replies.into_iter().zip(appended) {
                // A caller that gave up (dropped its future) does not stop the others.
                let _ = reply.send(Ok(a));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, entries = entries.len(), log = log.kind(), "transparency log batch append failed");
            let shared = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(TlogError::Batch(Arc::clone(&shared))));
            }
        }
    }
}
