//! glibc's malloc and a training step's large buffers.
//!
//! glibc gives each allocation above its mmap threshold (128 KiB at first) a mapping of its
//! own and unmaps it when freed; below it, freed memory at the heap's top is returned to the
//! kernel once it exceeds the trim threshold. Either way a step's large buffers (a batch's
//! activations and gradients, the convolutions' im2col columns, megabytes each) come back
//! next step as fresh pages: a page fault and a zeroed 4 KiB page each. The CNN benchmark
//! spent about 12% of its time in the kernel's page-fault path and ran 1.24–1.38× faster
//! with the thresholds below (`BENCHMARKS.md`); the MLP gained 1–2%. Freed buffers then stay
//! in the heap for the next step, so resident memory stays near its peak instead of
//! dropping between steps; the peak itself did not change.

/// The settings: buffers up to 32 MiB (glibc's largest mmap threshold) come from the heap,
/// up to 1 GiB of free heap is kept, and the heap grows 64 MiB at a time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const SETTINGS: [(std::ffi::c_int, std::ffi::c_int); 3] =
    [(libc::M_MMAP_THRESHOLD, 32 << 20), (libc::M_TRIM_THRESHOLD, 1 << 30), (libc::M_TOP_PAD, 64 << 20)];

/// Variables by which a user sets glibc's malloc: with any of them set, it is left alone.
const USER_SETTINGS: [&str; 4] =
    ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES"];

/// Applies [`SETTINGS`] once per process, before the first CPU run, unless the user set
/// glibc's malloc through its environment variables.
pub(crate) fn keep_freed_buffers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if !user_set(|v| std::env::var_os(v).is_some()) {
            apply();
        }
    });
}

/// Whether one of [`USER_SETTINGS`] is set (`is_set` reads the environment).
fn user_set(is_set: impl Fn(&str) -> bool) -> bool {
    USER_SETTINGS.iter().any(|v| is_set(v))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() {
    for (param, value) in SETTINGS {
        // SAFETY: mallopt takes the allocator's own lock; these parameters and values are
        // in the ranges glibc documents (it returns 0 and changes nothing otherwise)
        unsafe { libc::mallopt(param, value) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_setting_of_glibc_s_malloc_wins() {
        assert!(!user_set(|_| false));
        assert!(user_set(|v| v == "MALLOC_TRIM_THRESHOLD_"));
        assert!(user_set(|v| v == "GLIBC_TUNABLES"));
        assert!(!user_set(|v| v == "MALLOC_ARENA_MAX"), "a setting we do not change");
    }
}
