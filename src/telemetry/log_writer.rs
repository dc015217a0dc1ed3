//! The server's log lines, gathered in memory and written by a thread of their own in
//! batches: at most every [`Batching::write_every`], sooner once [`Batching::batch_bytes`]
//! are waiting.
//!
//! A call that logs appends its line to a buffer under a lock; only the first line of a
//! batch wakes the writer. A writer woken for every line (as a channel to a thread does)
//! cost a system call and a context switch per line: at ten thousand calls a second, more
//! than a third of the server's CPU (docs/benchmarks.md §6).
//!
//! No line is dropped while the writer runs: once [`Batching::max_waiting_bytes`] are
//! waiting, a call that logs waits for the writer, as it would on stderr itself. Lines come
//! out whole, in the order they were appended. A line waits up to `write_every` (20 ms) to
//! be written, so a process killed outright loses at most that much of its log. Stopping
//! writes what waits, within [`Batching::stop_within`]; should stderr not take it by then,
//! the thread is left to it and the process goes on ending. Once the writer has stopped (or
//! died), lines are dropped.

use std::{
    io::{self, Write},
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

/// When the writer writes.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// The longest a line waits before it is written.
    pub write_every: Duration,
    /// Bytes that are written at once, without waiting for `write_every`.
    pub batch_bytes: usize,
    /// Bytes waiting beyond which a call that logs waits for the writer.
    pub max_waiting_bytes: usize,
    /// How long stopping waits for the last lines to be written.
    pub stop_within: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            write_every: Duration::from_millis(20),
            batch_bytes: 64 * 1024,
            max_waiting_bytes: 16 * 1024 * 1024,
            stop_within: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct State {
    waiting: Vec<u8>,
    /// Calls that wait for room.
    blocked: usize,
    stopping: bool,
    /// The writer's thread has ended (stopped, or died).
    finished: bool,
}

struct Shared {
    batching: Batching,
    state: Mutex<State>,
    /// Wakes the writer: a first line, a full batch, or the end.
    lines: Condvar,
    /// Wakes the calls waiting for room, and the guard waiting for the writer to finish.
    room: Condvar,
}

/// Marks the writer finished when its thread ends, even by a panic, so that no call waits
/// for room from a writer that is gone.
struct Finished<'a>(&'a Shared);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.finished = true;
        state.stopping = true;
        self.0.room.notify_all();
    }
}

impl Shared {
    /// The state, even after a thread panicked while holding it: a log line half appended
    /// is better than a server that stops logging.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, line: &[u8]) {
        let mut state = self.lock();
        let limit = self
            .batching
            .max_waiting_bytes
            .max(self.batching.batch_bytes);
        while state.waiting.len() >= limit && !state.stopping {
            state.blocked += 1;
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.blocked -= 1;
        }
        if state.finished {
            return;
        }
        let before = state.waiting.len();
        state.waiting.extend_from_slice(line);
        let batch = self.batching.batch_bytes;
        if before == 0 || (before < batch && state.waiting.len() >= batch) {
            self.lines.notify_one();
        }
    }

    /// Writes batches to `sink` until told to stop, then what is left.
    fn write_batches(&self, mut sink: impl Write) {
        let mut batch = Vec::new();
        loop {
            let mut state = self.lock();
            state = self
                .lines
                .wait_while(state, |state| state.waiting.is_empty() && !state.stopping)
                .unwrap_or_else(PoisonError::into_inner);
            let (waited, _) = self
                .lines
                .wait_timeout_while(state, self.batching.write_every, |state| {
                    state.waiting.len() < self.batching.batch_bytes && !state.stopping
                })
                .unwrap_or_else(PoisonError::into_inner);
            state = waited;
            std::mem::swap(&mut state.waiting, &mut batch);
            let stopping = state.stopping;
            if state.blocked > 0 {
                self.room.notify_all();
            }
            drop(state);
            if batch.is_empty() && stopping {
                return;
            }
            // Nowhere to report a failed write of the log itself: the lines are lost, the
            // server goes on.
            let _ = sink.write_all(&batch).and_then(|()| sink.flush());
            batch.clear();
        }
    }
}

/// Hands each log line to the batches; a [`MakeWriter`] for `tracing_subscriber::fmt`.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Writes the lines still waiting and stops the writer's thread when dropped.
#[must_use = "dropping the guard stops the writer"]
pub struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// One event's writer: the formatter writes its line, which is appended whole.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl BatchedWriter {
    /// Starts the thread that writes to `sink`.
    pub fn spawn(
        sink: impl Write + Send + 'static,
        batching: Batching,
        thread_name: &str,
    ) -> io::Result<(BatchedWriter, WriterGuard)> {
        let shared = Arc::new(Shared {
            batching,
            state: Mutex::new(State::default()),
            lines: Condvar::new(),
            room: Condvar::new(),
        });
        let writer = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                let _finished = Finished(&writer);
                writer.write_batches(sink);
            })?;
        Ok((
            BatchedWriter {
                shared: Arc::clone(&shared),
            },
            WriterGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.shared.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.stopping = true;
        self.shared.lines.notify_one();
        self.shared.room.notify_all();
        let (state, _) = self
            .shared
            .room
            .wait_timeout_while(state, self.shared.batching.stop_within, |state| {
                !state.finished
            })
            .unwrap_or_else(PoisonError::into_inner);
        let finished = state.finished;
        drop(state);
        if finished && let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value and the condvar that tells of its changes.
    type Watched<T> = Arc<(Mutex<T>, Condvar)>;

    /// A sink that keeps what it was given, and how many writes gave it; its condvar wakes
    /// the test on each write.
    #[derive(Clone, Default)]
    struct Sink(Watched<(Vec<u8>, usize)>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut sink = self.0.0.lock().unwrap();
            sink.0.extend_from_slice(bytes);
            sink.1 += 1;
            self.0.1.notify_all();
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn line(thread: usize, n: usize) -> String {
        format!("{{\"thread\":{thread},\"n\":{n}}}\n")
    }

    #[test]
    fn lines_waiting_less_than_a_batch_are_written_together_at_the_end() {
        let sink = Sink::default();
        let batching = batching(Duration::from_secs(3600), usize::MAX, usize::MAX);
        let (writer, guard) = BatchedWriter::spawn(sink.clone(), batching, "test-log").unwrap();
        for n in 0..1000 {
            writer
                .make_writer()
                .write_all(line(0, n).as_bytes())
                .unwrap();
        }
        drop(guard);
        let (written, writes) = sink.0.0.lock().unwrap().clone();
        let expected: String = (0..1000).map(|n| line(0, n)).collect();
        assert_eq!(String::from_utf8(written).unwrap(), expected);
        assert_eq!(writes, 1, "one write for the whole batch");
    }

    fn batching(write_every: Duration, batch_bytes: usize, max_waiting_bytes: usize) -> Batching {
        Batching {
            write_every,
            batch_bytes,
            max_waiting_bytes,
            stop_within: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_lone_line_is_written_once_write_every_passes() {
        let sink = Sink::default();
        let batching = batching(Duration::from_millis(1), usize::MAX, usize::MAX);
        let (writer, guard) = BatchedWriter::spawn(sink.clone(), batching, "test-log").unwrap();
        writer.make_writer().write_all(b"alone\n").unwrap();
        let (lock, written) = &*sink.0;
        let (sink_state, timeout) = written
            .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(30), |sink| {
                sink.0.is_empty()
            })
            .unwrap();
        assert!(!timeout.timed_out(), "written while the writer still runs");
        assert_eq!(sink_state.0, b"alone\n");
        drop(sink_state);
        drop(guard);
    }

    #[test]
    fn concurrent_lines_all_arrive_whole_and_in_each_threads_order_when_callers_must_wait() {
        let sink = Sink::default();
        // Room for a few lines only: the threads keep waiting for the writer.
        let batching = batching(Duration::from_millis(1), 64, 128);
        let (writer, guard) = BatchedWriter::spawn(sink.clone(), batching, "test-log").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for n in 0..2000 {
                        writer
                            .make_writer()
                            .write_all(line(thread, n).as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let written = String::from_utf8(sink.0.0.lock().unwrap().0.clone()).unwrap();
        let mut next = [0usize; 4];
        for text in written.lines() {
            let value: serde_json::Value = serde_json::from_str(text).expect("a whole line");
            let thread = value["thread"].as_u64().unwrap() as usize;
            assert_eq!(value["n"].as_u64().unwrap() as usize, next[thread]);
            next[thread] += 1;
        }
        assert_eq!(next, [2000; 4], "every line arrived");
    }

    /// A sink that takes nothing until its gate opens, then keeps what it was given.
    #[derive(Clone, Default)]
    struct GatedSink(Watched<(bool, Vec<u8>)>);

    impl GatedSink {
        fn open(&self) {
            self.0.0.lock().unwrap().0 = true;
            self.0.1.notify_all();
        }
    }

    impl Write for GatedSink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let (lock, opened) = &*self.0;
            let mut sink = opened
                .wait_while(lock.lock().unwrap(), |sink| !sink.0)
                .unwrap();
            sink.1.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Waits, yielding, until `condition` holds; fails after 30 s.
    fn until(mut condition: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !condition() {
            assert!(std::time::Instant::now() < deadline, "never happened");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_call_waits_while_the_writer_is_stuck_and_goes_on_once_it_writes() {
        let sink = GatedSink::default();
        let (writer, guard) = BatchedWriter::spawn(
            sink.clone(),
            batching(Duration::from_millis(1), 8, 16),
            "test-log",
        )
        .unwrap();
        let logging = {
            let writer = writer.clone();
            std::thread::spawn(move || {
                for n in 0..100 {
                    writer
                        .make_writer()
                        .write_all(line(0, n).as_bytes())
                        .unwrap();
                }
            })
        };
        until(|| writer.shared.lock().blocked > 0);
        assert!(!logging.is_finished(), "the call waits for room");
        sink.open();
        logging.join().unwrap();
        drop(guard);
        let expected: String = (0..100).map(|n| line(0, n)).collect();
        assert_eq!(
            String::from_utf8(sink.0.0.lock().unwrap().1.clone()).unwrap(),
            expected
        );
    }

    #[test]
    fn stopping_gives_up_on_a_sink_that_takes_nothing() {
        let sink = GatedSink::default();
        let mut batching = batching(Duration::from_millis(1), 8, 16);
        batching.stop_within = Duration::from_millis(50);
        let (writer, guard) = BatchedWriter::spawn(sink.clone(), batching, "test-log").unwrap();
        writer.make_writer().write_all(b"stuck\n").unwrap();
        until(|| writer.shared.lock().waiting.is_empty());
        drop(guard);
        assert!(!writer.shared.lock().finished, "the writer is still stuck");
        // The writer's thread ends once the sink takes the line.
        sink.open();
    }

    /// A sink whose writes panic.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            panic!("the sink broke");
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn calls_never_wait_for_a_writer_that_died() {
        let (writer, guard) = BatchedWriter::spawn(
            Broken,
            batching(Duration::from_millis(1), 8, 16),
            "test-log",
        )
        .unwrap();
        writer.make_writer().write_all(b"first\n").unwrap();
        until(|| writer.shared.lock().finished);
        for n in 0..100 {
            writer
                .make_writer()
                .write_all(line(0, n).as_bytes())
                .unwrap();
        }
        assert!(writer.shared.lock().waiting.is_empty(), "lines are dropped");
        drop(guard);
    }
}
