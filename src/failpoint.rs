//! Crash points for the crash-safety tests: `PRODOPS_FAILPOINT=name` (or
//! `name@N` for the N-th hit) makes the process kill itself with SIGKILL when
//! it reaches that point, exactly as `kill -9` would. Unset, a hit costs one
//! check of a cached value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn target() -> &'static Option<(String, u64)> {
    TARGET.get_or_init(|| {
        let spec = std::env::var("PRODOPS_FAILPOINT").ok()?;
        let (name, n) = match spec.split_once('@') {
            Some((name, n)) => (name.to_string(), n.parse().ok()?),
            None => (spec, 1),
        };
        Some((name, n))
    })
}

/// Marks a point where a crash must be survivable; kills the process if it is the chosen one.
pub fn hit(name: &str) {
    let Some((target, nth)) = target() else {
        return;
    };
    if target == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
        // SAFETY: sending SIGKILL to ourselves; nothing after this runs.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Marks a point where a panic must leave things as they were (the console
/// restoring the terminal); panics if it is the chosen point.
pub fn panic_at(name: &str) {
    let Some((target, nth)) = target() else {
        return;
    };
    if target == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
        panic!("failpoint {name}: a panic on purpose");
    }
}
