//! Ctrl-C and preemption signals: a graceful stop, as Lightning's KeyboardInterrupt and
//! SLURM signal handling.
//!
//! While a `fit` runs, SIGINT, SIGTERM, SIGUSR1 and SIGHUP (each unless the program has a
//! handler of its own for it, or ignores it) only record the signal; the loop checks after
//! each batch and ends the run with `Error::Interrupted`, so `on_exception` runs (an
//! `OnExceptionCheckpoint` saves) and the caller exits with [`Signal::exit_code`]. A second
//! signal while stopping exits at once with that code. When the last `fit` ends, the
//! previous handlers come back, and a signal that came after the last check is raised again
//! under them, so it is never lost.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal that stopped a run (`Error::Interrupted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// Ctrl-C.
    Int,
    /// `kill`, `scancel`, or a cluster about to preempt the job.
    Term,
    /// SLURM's warning before the time limit (`sbatch --signal=USR1@90`), Lightning's
    /// requeue signal.
    Usr1,
    /// The terminal went away.
    Hup,
}

impl Signal {
    /// The signal's number on this platform.
    pub fn number(self) -> i32 {
        match self {
            Signal::Int => sys::SIGINT,
            Signal::Term => sys::SIGTERM,
            Signal::Usr1 => sys::SIGUSR1,
            Signal::Hup => sys::SIGHUP,
        }
    }

    /// The conventional exit status of a process stopped by it: 128 + its number (130 for
    /// Ctrl-C, 143 for SIGTERM).
    pub fn exit_code(self) -> i32 {
        128 + self.number()
    }

    pub(crate) fn from_number(n: i32) -> Option<Signal> {
        [Signal::Int, Signal::Term, Signal::Usr1, Signal::Hup].into_iter().find(|s| s.number() == n)
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Int => "Ctrl-C (SIGINT)",
            Signal::Term => "SIGTERM",
            Signal::Usr1 => "SIGUSR1",
            Signal::Hup => "SIGHUP",
        })
    }
}

impl crate::Error {
    /// The exit status a program should end with for this error: [`Signal::exit_code`] for
    /// a run stopped by a signal (130 for Ctrl-C), else 1.
    ///
    /// ```no_run
    /// # fn train() -> lightning::Result<()> { Ok(()) }
    /// if let Err(e) = train() {
    ///     eprintln!("error: {e}");
    ///     std::process::exit(e.exit_code());
    /// }
    /// ```
    pub fn exit_code(&self) -> i32 {
        match self {
            crate::Error::Interrupted { signal, .. } => signal.exit_code(),
            _ => 1,
        }
    }
}

/// The signal received and not yet taken by the loop (0: none).
static PENDING: AtomicI32 = AtomicI32::new(0);

/// Takes a pending signal (so the next run starts clean).
#[inline]
pub(crate) fn take() -> Option<Signal> {
    if PENDING.load(Ordering::Relaxed) == 0 {
        return None;
    }
    Signal::from_number(PENDING.swap(0, Ordering::SeqCst))
}

/// The handlers are installed while this lives (one per running `fit`; the first installs,
/// the last restores).
pub(crate) struct Armed(());

pub(crate) fn arm() -> Armed {
    sys::arm();
    Armed(())
}

impl Drop for Armed {
    fn drop(&mut self) {
        sys::disarm();
    }
}

#[cfg(unix)]
mod sys {
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

    pub use libc::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

    use super::PENDING;

    /// Running fits, and the handlers ours replaced (to put back when the count drops to 0).
    static ARMED: Mutex<(usize, Vec<(i32, libc::sigaction)>)> = Mutex::new((0, Vec::new()));

    /// Async-signal-safe: an atomic swap, and `_exit` on the second signal.
    extern "C" fn on_signal(sig: libc::c_int) {
        if PENDING.swap(sig, Ordering::SeqCst) != 0 {
            // SAFETY: `_exit` is async-signal-safe; a second signal means "stop now".
            unsafe { libc::_exit(128 + sig) }
        }
    }

    pub fn arm() {
        let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        armed.0 += 1;
        if armed.0 > 1 {
            return;
        }
        for sig in [SIGINT, SIGTERM, SIGUSR1, SIGHUP] {
            // SAFETY: plain sigaction calls with zero-initialised structs; the handler only
            // touches an atomic (or exits).
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 || old.sa_sigaction != libc::SIG_DFL {
                    continue; // the program's own handler, or ignored (nohup): leave it
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                new.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut new.sa_mask);
                if libc::sigaction(sig, &new, std::ptr::null_mut()) == 0 {
                    armed.1.push((sig, old));
                }
            }
        }
    }

    pub fn disarm() {
        let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        armed.0 = armed.0.saturating_sub(1);
        if armed.0 > 0 {
            return;
        }
        for (sig, old) in armed.1.drain(..) {
            // SAFETY: puts back the action read in `arm`.
            unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
        }
        // a signal after the loop's last check: deliver it under the program's own handling
        let late = PENDING.swap(0, Ordering::SeqCst);
        if late != 0 {
            // SAFETY: raising a signal at ourselves.
            unsafe { libc::raise(late) };
        }
    }
}

#[cfg(not(unix))]
mod sys {
    //! Ctrl-C only, through `ctrlc`; the handler stays for the life of the process.
    use std::sync::atomic::Ordering;

    use super::PENDING;

    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
    pub const SIGUSR1: i32 = 10;
    pub const SIGHUP: i32 = 1;

    pub fn arm() {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            // an error means the program installed its own handler: leave it alone
            let _ = ctrlc::set_handler(|| {
                if PENDING.swap(SIGINT, Ordering::SeqCst) != 0 {
                    std::process::exit(128 + SIGINT);
                }
            });
        });
    }

    pub fn disarm() {}
}
