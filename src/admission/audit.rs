//! The audit line of each admission decision, written off the request path.
//!
//! Formatting the line as JSON and writing it cost about a third of a review's CPU
//! (BENCHMARKS.md). The request now only copies the line's fields (a few short strings, into one
//! allocation) into a bounded queue, without blocking; one writer thread emits them as the same
//! `tracing` event (target, message and fields unchanged), so the subscriber formats and writes
//! them there, in batches when the subscriber writes through [`LogWriter`]. When the queue is full the line is
//! dropped and counted in `spin_operator_admission_audit_dropped_total`: the request never
//! waits for the log, and the queue never grows past [`QUEUE_LINES`].
//!
//! With `--log-format json` ([`AuditLog::start_json`]) the writer serializes the line itself,
//! byte for byte the line `tracing-subscriber`'s JSON format writes for that event: its
//! formatter spent ~24,000 instructions a line visiting the fields through `fmt::Write`
//! adaptors, `serde_json` on a struct about a tenth of that.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer as FmtWriter;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

/// Lines waiting for the writer at most (a few MiB at ~300 bytes a line): at 20,000 reviews/s
/// that is 3 s of the writer being starved of CPU before a line is dropped.
pub const QUEUE_LINES: usize = 65_536;
/// Lines the writer formats before it writes them out in one go.
const BATCH_LINES: usize = 256;
/// After a batch that emptied the queue, the writer waits this long before taking the next
/// line: lines queued meanwhile wait for it instead of waking it one by one (at the API
/// server's pace, a wake-up per line was most of the writer's CPU and a context switch per
/// review). A full batch is followed at once.
const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// What one decision's audit line says, borrowed from the request and the decision.
#[derive(Debug, Clone, Copy)]
pub(super) struct AuditFields<'a> {
    pub uid: &'a str,
    pub caller_authenticated: bool,
    pub claimed_user: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub operation: &'static str,
    pub webhook: &'static str,
    pub allowed: bool,
    /// The rules that fired, logged comma-separated.
    pub rules: &'a [&'static str],
    pub patch_ops: usize,
    pub warnings: usize,
    pub dry_run: bool,
}

/// One decision's audit line, owned, on its way to the writer: the request path copies its
/// strings into one allocation (instead of one per field) and formats nothing.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AuditLine {
    /// uid, claimed user, namespace, name and the rules (comma-separated), one after another.
    text: String,
    /// Where each of the first four ends in `text`; the rules run to its end.
    ends: [usize; 4],
    caller_authenticated: bool,
    operation: &'static str,
    webhook: &'static str,
    allowed: bool,
    patch_ops: usize,
    warnings: usize,
    dry_run: bool,
}

/// The line as `tracing-subscriber`'s JSON format (`flatten_event`) writes the event: fields in
/// the event's order, `message` first, `target` last.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    timestamp: &'a str,
    level: &'static str,
    message: &'static str,
    uid: &'a str,
    caller_authenticated: bool,
    claimed_user: &'a str,
    namespace: &'a str,
    name: &'a str,
    operation: &'static str,
    webhook: &'static str,
    allowed: bool,
    rules: &'a str,
    patch_ops: usize,
    warnings: usize,
    dry_run: bool,
    target: &'static str,
}

impl AuditLine {
    pub(super) fn new(f: &AuditFields<'_>) -> Self {
        let strings = [f.uid, f.claimed_user, f.namespace, f.name];
        let rules_len = f.rules.iter().map(|r| r.len() + 1).sum::<usize>();
        let mut text =
            String::with_capacity(strings.iter().map(|s| s.len()).sum::<usize>() + rules_len);
        let ends = strings.map(|s| {
            text.push_str(s);
            text.len()
        });
        for (i, rule) in f.rules.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(rule);
        }
        Self {
            text,
            ends,
            caller_authenticated: f.caller_authenticated,
            operation: f.operation,
            webhook: f.webhook,
            allowed: f.allowed,
            patch_ops: f.patch_ops,
            warnings: f.warnings,
            dry_run: f.dry_run,
        }
    }

    /// The `i`th string of `text` (uid, claimed user, namespace, name, rules).
    fn part(&self, i: usize) -> &str {
        let start = i.checked_sub(1).and_then(|j| self.ends.get(j)).copied();
        let start = start.unwrap_or(0);
        let end = self.ends.get(i).copied().unwrap_or(self.text.len());
        self.text.get(start..end).unwrap_or_default()
    }

    /// Appends the line as JSON to `out`, stamped `timestamp`.
    fn write_json(&self, timestamp: &str, out: &mut Vec<u8>) {
        let line = JsonLine {
            timestamp,
            level: "INFO",
            message: MESSAGE,
            uid: self.part(0),
            caller_authenticated: self.caller_authenticated,
            claimed_user: self.part(1),
            namespace: self.part(2),
            name: self.part(3),
            operation: self.operation,
            webhook: self.webhook,
            allowed: self.allowed,
            rules: self.part(4),
            patch_ops: self.patch_ops,
            warnings: self.warnings,
            dry_run: self.dry_run,
            target: TARGET,
        };
        // Serializing plain strings, numbers and booleans into a Vec cannot fail.
        if serde_json::to_writer(&mut *out, &line).is_ok() {
            out.push(b'\n');
        }
    }

    /// The event as it always was, emitted where the writer runs.
    fn emit(&self) {
        // `TARGET` and `MESSAGE`, spelled out: the macro takes literals only.
        tracing::info!(
            target: "spin_operator::admission",
            uid = %self.part(0),
            caller_authenticated = self.caller_authenticated,
            claimed_user = self.part(1),
            namespace = self.part(2),
            name = self.part(3),
            operation = self.operation,
            webhook = self.webhook,
            allowed = self.allowed,
            rules = %self.part(4),
            patch_ops = self.patch_ops,
            warnings = self.warnings,
            dry_run = self.dry_run,
            "admission decision"
        );
    }
}

/// The event's target and message (also in the lines [`JsonLine`] writes).
const TARGET: &str = "spin_operator::admission";
const MESSAGE: &str = "admission decision";

/// Where a batch of JSON lines goes: the log subscriber's own output.
pub trait BatchOut: Send {
    fn write_batch(&self, batch: &[u8]);
}

/// How the writer thread writes lines.
enum Out {
    /// As `tracing` events, formatted by the subscriber.
    Events,
    /// As JSON lines, formatted here and written in batches.
    Json(Box<dyn BatchOut>),
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
        Self::start_with(capacity, dropped, Out::Events)
    }

    /// [`AuditLog::start`] for a subscriber with the JSON format writing to `out`: the writer
    /// thread serializes each line as that format would and writes batches to `out` itself.
    pub fn start_json(capacity: usize, dropped: Counter, out: impl BatchOut + 'static) -> Self {
        Self::start_with(capacity, dropped, Out::Json(Box::new(out)))
    }

    fn start_with(capacity: usize, dropped: Counter, out: Out) -> Self {
        let (tx, rx) = sync_channel(capacity);
        let spawned = std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_lines(rx, out));
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

fn write_lines(rx: Receiver<AuditLine>, out: Out) {
    BATCH.with(|b| *b.borrow_mut() = Some(Vec::with_capacity(64 * 1024)));
    let mut pending = Vec::with_capacity(BATCH_LINES);
    let mut json = Vec::with_capacity(64 * 1024);
    let mut timestamp = String::with_capacity(32);
    while let Ok(first) = rx.recv() {
        pending.push(first);
        while pending.len() < BATCH_LINES {
            match rx.try_recv() {
                Ok(line) => pending.push(line),
                Err(_) => break,
            }
        }
        let n = pending.len();
        match &out {
            Out::Events => {
                for (i, line) in pending.drain(..).enumerate() {
                    LAST_OF_BATCH.with(|l| l.set(i + 1 == n));
                    line.emit();
                }
            }
            Out::Json(out) => {
                for line in pending.drain(..) {
                    timestamp.clear();
                    // The subscriber's own clock and format (RFC 3339, microseconds, UTC).
                    let _ = SystemTime.format_time(&mut FmtWriter::new(&mut timestamp));
                    line.write_json(&timestamp, &mut json);
                }
                out.write_batch(&json);
                json.clear();
            }
        }
        if n < BATCH_LINES {
            std::thread::sleep(LINGER);
        }
    }
}

/// The log subscriber's writer: `out` (stdout in `run`). On the audit writer thread, lines are
/// collected and written with one `write` per batch; elsewhere each line is written at once.
/// A clone writes to the same `out` (for [`AuditLog::start_json`]).
pub struct LogWriter<W> {
    out: Arc<Mutex<W>>,
}

impl<W> Clone for LogWriter<W> {
    fn clone(&self) -> Self {
        Self {
            out: self.out.clone(),
        }
    }
}

impl<W: Write + Send> BatchOut for LogWriter<W> {
    fn write_batch(&self, batch: &[u8]) {
        // Nowhere to report a failed log write but the log itself.
        let _ = write_locked(&self.out, batch);
    }
}

fn write_locked<W: Write>(out: &Mutex<W>, buf: &[u8]) -> io::Result<()> {
    // A panic while another line was written leaves the sink usable.
    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
    out.write_all(buf)?;
    out.flush()
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
        write_locked(self.out, buf)
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

    fn fields<'a>(i: usize, uid: &'a str, name: &'a str) -> AuditFields<'a> {
        AuditFields {
            uid,
            caller_authenticated: i.is_multiple_of(2),
            claimed_user: "alice",
            namespace: "apps",
            name,
            operation: "CREATE",
            webhook: "vspinapp.kb.io",
            allowed: !i.is_multiple_of(3),
            rules: &["SA-A", "SA-B"],
            patch_ops: i,
            warnings: 1,
            dry_run: false,
        }
    }

    fn line(i: usize) -> AuditLine {
        AuditLine::new(&fields(i, &format!("uid-{i}"), &format!("web-{i}")))
    }

    #[test]
    fn a_line_reads_back_the_fields_it_was_made_of() {
        let l = line(4);
        let parts: Vec<&str> = (0..5).map(|i| l.part(i)).collect();
        assert_eq!(parts, ["uid-4", "alice", "apps", "web-4", "SA-A,SA-B"]);
        let empty = AuditLine::new(&AuditFields {
            rules: &[],
            ..fields(1, "", "")
        });
        let parts: Vec<&str> = (0..5).map(|i| empty.part(i)).collect();
        assert_eq!(parts, ["", "alice", "apps", "", ""]);
        let one = AuditLine::new(&AuditFields {
            rules: &["SA-C"],
            ..fields(1, "u", "n")
        });
        assert_eq!(one.part(4), "SA-C");
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
            write_lines(rx, Out::Events);
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

    /// Lines with what JSON must escape in every string field.
    fn awkward(i: usize) -> AuditLine {
        AuditLine::new(&AuditFields {
            claimed_user: "system:serviceaccount:ns:ü\u{7}\n",
            namespace: "tab\there",
            rules: &[],
            ..fields(i, &format!("uid-\"{i}\"\\"), "<web>&'")
        })
    }

    /// The lines as text with their timestamps blanked (the time each was written).
    fn blank_timestamps(sink: &Sink) -> Vec<String> {
        let text = String::from_utf8(sink.0.lock().unwrap().0.clone()).unwrap();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let ts = v["timestamp"].as_str().unwrap().to_owned();
                assert!(ts.len() == STAMP.len() && ts.ends_with('Z'), "{ts}");
                l.replacen(&ts, "T", 1)
            })
            .collect()
    }

    /// A timestamp as `tracing-subscriber` writes it: RFC 3339, microseconds, UTC.
    const STAMP: &str = "2026-12-04T20:16:14.123456Z";

    #[test]
    fn json_lines_written_by_the_writer_are_the_subscribers_own_byte_for_byte() {
        let lines: Vec<AuditLine> = (0..6)
            .map(|i| if i % 2 == 0 { line(i) } else { awkward(i) })
            .collect();
        let subscriber = Sink::default();
        tracing::subscriber::with_default(json_log(&subscriber), || {
            let log = AuditLog::in_place(Counter::default());
            for l in &lines {
                log.write(l.clone());
            }
        });
        let direct = Sink::default();
        let (tx, rx) = sync_channel(16);
        for l in &lines {
            tx.send(l.clone()).unwrap();
        }
        drop(tx);
        // No subscriber on this thread: the lines can only come from the writer's own format.
        write_lines(rx, Out::Json(Box::new(LogWriter::new(direct.clone()))));
        let expected = blank_timestamps(&subscriber);
        assert_eq!(expected.len(), 6);
        assert!(
            expected[1].contains(r#""uid":"uid-\"1\"\\""#),
            "{}",
            expected[1]
        );
        assert_eq!(blank_timestamps(&direct), expected);
        assert_eq!(direct.0.lock().unwrap().1, 1, "one write per batch");
    }

    #[test]
    fn started_for_json_the_queue_ends_in_the_subscribers_output() {
        let out = Sink::default();
        {
            let log = AuditLog::start_json(8, Counter::default(), LogWriter::new(out.clone()));
            log.write(line(1));
            log.write(line(2));
            // Dropping the last clone waits for the writer to write what is queued.
        }
        let text = String::from_utf8(out.0.lock().unwrap().0.clone()).unwrap();
        let names: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["name"].to_string())
            .collect();
        assert_eq!(names, [r#""web-1""#, r#""web-2""#]);
    }
}
