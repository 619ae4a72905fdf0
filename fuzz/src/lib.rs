//! What the fuzz targets share: each input runs on a thread with the stack Postern's code
//! has in production, and a panic counts as a crash only when Postern itself does not
//! catch it.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Mutex, OnceLock};

/// 2 MiB, tokio's default for its workers and blocking pool. `postern serve` gives them, and
/// the import parsers, `postern::ingest::PARSE_THREAD_STACK` (8 MiB) as margin: the targets
/// run with a quarter of that, so a deep recursion shows here well before it could overflow
/// in production (libFuzzer's own thread has 8 MiB and would show nothing until then).
pub const STACK_BYTES: usize = 2 * 1024 * 1024;

type Job = Box<dyn FnOnce() + Send>;

struct Worker {
    jobs: SyncSender<Job>,
    /// `Err(panic message)` when a job panicked and nothing in it caught the panic.
    done: Receiver<Result<(), String>>,
}

static WORKER: OnceLock<Mutex<Worker>> = OnceLock::new();

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn start_worker() -> Mutex<Worker> {
    let (jobs, job_rx) = sync_channel::<Job>(0);
    let (done_tx, done) = sync_channel(0);
    std::thread::Builder::new()
        .name("fuzz-input".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            // Replaces libfuzzer-sys's hook, which aborts on every panic, even one that
            // Postern catches on purpose (mail-parser's, in `parse_inbound`): remember the
            // message and let unwinding decide.
            std::panic::set_hook(Box::new(|info| {
                let message = format!("{info}");
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(message));
            }));
            for job in job_rx {
                let outcome = catch_unwind(AssertUnwindSafe(job)).map_err(|_| {
                    LAST_PANIC
                        .with(|p| p.borrow_mut().take())
                        .unwrap_or_else(|| "panic without a message".into())
                });
                if done_tx.send(outcome).is_err() {
                    return;
                }
            }
        })
        .expect("cannot start the fuzz worker thread");
    Mutex::new(Worker { jobs, done })
}

/// Runs `check` on the worker thread and waits for it. A panic that escapes `check` (that
/// Postern did not catch) is reported and aborts the process, which libFuzzer records as a
/// crash with its input; a stack overflow aborts by itself.
pub fn run(check: impl FnOnce() + Send + 'static) {
    let worker = WORKER
        .get_or_init(start_worker)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    worker
        .jobs
        .send(Box::new(check))
        .expect("the fuzz worker thread is gone");
    match worker.done.recv() {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => {
            eprintln!("==== uncaught panic in Postern code: {panic}");
            std::process::abort();
        }
        Err(_) => {
            eprintln!("==== the fuzz worker thread died");
            std::process::abort();
        }
    }
}

/// Splits `data` into pieces of 1 to `max` bytes, sizes drawn from `seed`: the same input
/// can then arrive the way a network or a decompressor delivers it.
pub fn pieces(data: &[u8], seed: u8, max: usize) -> Vec<Vec<u8>> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % max.max(1)) + 1;
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head.to_vec());
        rest = tail;
    }
    out
}
