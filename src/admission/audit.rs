//! The audit line of each admission decision, written off the request path.
//!
//! Formatting the line as JSON and writing it cost about a third of a review's CPU
//! (BENCHMARKS.md). The request now only copies the line's fields (a few short strings) into a
//! bounded queue, without blocking; one writer thread emits them as the same `tracing` event
//! (target, message and fields unchanged), so the subscriber formats and writes them there, in
//! batches when the subscriber writes through [`LogWriter`]. When the queue is full the line is
//! dropped and counted in `spin_operator_admission_audit_dropped_total`: the request never
//! waits for the log, and the queue never grows past [`QUEUE_LINES`].

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::fmt::MakeWriter;

/// Lines waiting for the writer at most (a few MiB at ~300 bytes a line): at 20,000 reviews/s
/// that is 3 s of the writer being starved of CPU before a line is dropped.
pub const QUEUE_LINES: usize = 65_536;
/// Lines the writer formats before it writes them out in one go.
const BATCH_LINES: usize = 256;

/// One decision's audit line: what `log_decision` used to log in place.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AuditLine {
    pub uid: String,
    pub caller_authenticated: bool,
    pub claimed_user: String,
    pub namespace: String,
    pub name: String,
    pub operation: &'static str,
    pub webhook: &'static str,
    pub allowed: bool,
    pub rules: String,
    pub patch_ops: usize,
    pub warnings: usize,
    pub dry_run: bool,
}

impl AuditLine {
    /// The event as it always was, emitted where the writer runs.
    fn emit(&self) {
        tracing::info!(
            target: "spin_operator::admission",
            uid = %self.uid,
            caller_authenticated = self.caller_authenticated,
            claimed_user = self.claimed_user.as_str(),
            namespace = self.namespace.as_str(),
            name = self.name.as_str(),
            operation = self.operation,
            webhook = self.webhook,
            allowed = self.allowed,
            rules = %self.rules,
            patch_ops = self.patch_ops,
            warnings = self.warnings,
            dry_run = self.dry_run,
            "admission decision"
        );
    }
}

/// The sending side of the audit queue; cheap to clone (one per request with the state).
#[derive(Debug, Clone)]
pub struct AuditLog {
    /// `None` when the writer thread could not be started: lines are then emitted in place.
    tx: Option<SyncSender<AuditLine>>,
    dropped: Counter,
    /// Declared after `tx`: when the last clone goes, the queue closes first, then this waits
    /// for the writer to write what is queued (at shutdown, no decision goes unlogged).
    _writer: Option<Arc<Writer>>,
}

#[derive(Debug)]
struct Writer(Option<std::thread::JoinHandle<()>>);

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

impl AuditLog {
    /// Starts the writer thread with a queue of `capacity` lines; `dropped` counts lines lost
    /// to a full queue. The thread ends when the last `AuditLog` clone is dropped.
    pub fn start(capacity: usize, dropped: Counter) -> Self {
        let (tx, rx) = sync_channel(capacity);
        let spawned = std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_lines(rx));
        if let Err(e) = &spawned {
            tracing::warn!(error = %e, "audit log writer thread not started: writing in place");
        }
        match spawned {
            Ok(thread) => Self {
                tx: Some(tx),
                dropped,
                _writer: Some(Arc::new(Writer(Some(thread)))),
            },
            Err(_) => Self {
                tx: None,
                dropped,
                _writer: None,
            },
        }
    }

    /// No writer thread: each line is formatted and written by the request that decided it (as
    /// before the queue; for comparing the two in `benches/admission_load.rs`).
    pub fn in_place(dropped: Counter) -> Self {
        Self {
            tx: None,
            dropped,
            _writer: None,
        }
    }

    /// Queues `line` without waiting; a full queue drops and counts it.
    pub(super) fn write(&self, line: AuditLine) {
        let Some(tx) = &self.tx else {
            line.emit();
            return;
        };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.inc();
            }
            // The writer thread died (it never panics on its own): keep the line.
            Err(TrySendError::Disconnected(line)) => line.emit(),
        }
    }
}

/// Whether anyone would record the audit event (checked before copying its fields).
pub(super) fn enabled() -> bool {
    tracing::enabled!(target: "spin_operator::admission", tracing::Level::INFO)
}

thread_local! {
    /// On the writer thread: formatted lines not yet written.
    static BATCH: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    /// On the writer thread: the event being formatted is the last of its batch.
    static LAST_OF_BATCH: Cell<bool> = const { Cell::new(false) };
}

fn write_lines(rx: Receiver<AuditLine>) {
    BATCH.with(|b| *b.borrow_mut() = Some(Vec::with_capacity(64 * 1024)));
    let mut pending = Vec::with_capacity(BATCH_LINES);
    while let Ok(first) = rx.recv() {
        pending.push(first);
        while pending.len() < BATCH_LINES {
            match rx.try_recv() {
                Ok(line) => pending.push(line),
                Err(_) => break,
            }
        }
        let n = pending.len();
        for (i, line) in pending.drain(..).enumerate() {
            LAST_OF_BATCH.with(|l| l.set(i + 1 == n));
            line.emit();
        }
    }
}

/// The log subscriber's writer: `out` (stdout in `run`). On the audit writer thread, lines are
/// collected and written with one `write` per batch; elsewhere each line is written at once.
pub struct LogWriter<W> {
    out: Arc<Mutex<W>>,
}

impl<W> LogWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out: Arc::new(Mutex::new(out)),
        }
    }
}

/// One event's writer from [`LogWriter`].
pub struct LogHandle<'a, W: Write> {
    out: &'a Mutex<W>,
}

impl<'a, W: Write + 'a> MakeWriter<'a> for LogWriter<W> {
    type Writer = LogHandle<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LogHandle { out: &self.out }
    }
}

impl<W: Write> LogHandle<'_, W> {
    fn write_out(&self, buf: &[u8]) -> io::Result<()> {
        // A panic while another line was written leaves the sink usable.
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(buf)?;
        out.flush()
    }
}

impl<W: Write> Write for LogHandle<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let batched = BATCH.with(|b| match b.borrow_mut().as_mut() {
            Some(batch) => {
                batch.extend_from_slice(buf);
                true
            }
            None => false,
        });
        if !batched {
            self.write_out(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for LogHandle<'_, W> {
    /// The subscriber drops the writer after each event: after the last of a batch, write the
    /// batch out.
    fn drop(&mut self) {
        if !LAST_OF_BATCH.with(|l| l.get()) {
            return;
        }
        let batch = BATCH.with(|b| b.borrow_mut().as_mut().map(std::mem::take));
        if let Some(batch) = batch.filter(|b| !b.is_empty()) {
            // Nowhere to report a failed log write but the log itself.
            let _ = self.write_out(&batch);
            BATCH.with(|b| {
                if let Some(slot) = b.borrow_mut().as_mut() {
                    *slot = batch;
                    slot.clear();
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;
    use std::sync::mpsc::Receiver;
    use std::time::Duration;

    fn line(i: usize) -> AuditLine {
        AuditLine {
            uid: format!("uid-{i}"),
            caller_authenticated: i.is_multiple_of(2),
            claimed_user: "alice".into(),
            namespace: "apps".into(),
            name: format!("web-{i}"),
            operation: "CREATE",
            webhook: "vspinapp.kb.io",
            allowed: !i.is_multiple_of(3),
            rules: "SA-A,SA-B".into(),
            patch_ops: i,
            warnings: 1,
            dry_run: false,
        }
    }

    /// A queue without a writer thread: the test holds the receiving end.
    fn unstarted(capacity: usize, dropped: Counter) -> (AuditLog, Receiver<AuditLine>) {
        let (tx, rx) = sync_channel(capacity);
        let log = AuditLog {
            tx: Some(tx),
            dropped,
            _writer: None,
        };
        (log, rx)
    }

    #[test]
    fn a_full_queue_drops_and_counts_lines_without_waiting() {
        let mut registry = Registry::default();
        let metrics = crate::admission::AdmissionMetrics::register(&mut registry);
        let (log, rx) = unstarted(2, metrics.audit_dropped());
        // The writes must return although nobody reads: bounded wait for them, not a hang.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for i in 0..5 {
                log.write(line(i));
            }
            done_tx.send(log).unwrap();
        });
        let log = done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("writing to a full audit queue blocked");
        // The first two are queued as they were, the rest dropped and counted; nothing more.
        assert_eq!(rx.try_recv().unwrap(), line(0));
        assert_eq!(rx.try_recv().unwrap(), line(1));
        assert!(rx.try_recv().is_err(), "the queue grew past its bound");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("spin_operator_admission_audit_dropped_total 3\n"),
            "{text}"
        );
        // Room again once the writer catches up.
        log.write(line(5));
        assert_eq!(rx.try_recv().unwrap(), line(5));
    }

    /// A sink counting `write` calls.
    #[derive(Default, Clone)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn json_log(sink: &Sink) -> impl tracing::Subscriber + Send + Sync + 'static {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .json()
            .flatten_event(true)
            .with_writer(LogWriter::new(sink.clone()))
            .finish()
    }

    /// The lines as JSON without their timestamps (the time they were written).
    fn lines(sink: &Sink) -> Vec<serde_json::Value> {
        let text = String::from_utf8(sink.0.lock().unwrap().0.clone()).unwrap();
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("timestamp");
                v
            })
            .collect()
    }

    #[test]
    fn the_writer_logs_the_same_lines_as_in_place_in_one_write_per_batch() {
        let in_place = Sink::default();
        tracing::subscriber::with_default(json_log(&in_place), || {
            let log = AuditLog::in_place(Counter::default());
            for i in 0..10 {
                log.write(line(i));
            }
        });
        // The writer's loop on this thread (the subscriber is this thread's), fed ahead.
        let batched = Sink::default();
        tracing::subscriber::with_default(json_log(&batched), || {
            let (tx, rx) = sync_channel(16);
            for i in 0..10 {
                tx.send(line(i)).unwrap();
            }
            drop(tx);
            write_lines(rx);
        });
        let expected = lines(&in_place);
        assert_eq!(expected.len(), 10);
        assert_eq!(expected[3]["message"], "admission decision");
        assert_eq!(expected[3]["uid"], "uid-3");
        assert_eq!(expected[3]["rules"], "SA-A,SA-B");
        assert_eq!(expected[3]["target"], "spin_operator::admission");
        assert_eq!(lines(&batched), expected);
        assert_eq!(
            in_place.0.lock().unwrap().1,
            10,
            "in place: a write per line"
        );
        assert_eq!(
            batched.0.lock().unwrap().1,
            1,
            "queued: one write per batch"
        );
    }
}
