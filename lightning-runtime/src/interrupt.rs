//! Ctrl-C: a graceful stop, as Lightning's KeyboardInterrupt handling.
//!
//! The first `fit` installs a SIGINT handler (unless the program has its own) that only
//! raises a flag; the loop checks it after each batch and ends the run with
//! `Error::Interrupted`, so `on_exception` runs (an `OnExceptionCheckpoint` saves) and the
//! caller decides the exit status. A second Ctrl-C while stopping exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static FLAG: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

pub(crate) fn install() {
    INSTALL.call_once(|| {
        // an error means the program installed its own handler: leave it alone
        let _ = ctrlc::set_handler(|| {
            if FLAG.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    });
}

/// Takes a pending interrupt (so the next run starts clean).
#[inline]
pub(crate) fn take() -> bool {
    FLAG.load(Ordering::Relaxed) && FLAG.swap(false, Ordering::SeqCst)
}
