//! Crash points for the failure tests: with the `fault-injection` feature (which release
//! builds leave out), `MESHMART_CRASH_AT=<point>` makes the process abort at that point, as
//! abruptly as SIGKILL would, so a test can check what survives a crash at the awkward
//! moment. Without the feature a crash point is nothing.

/// Aborts the process here if `MESHMART_CRASH_AT` names `point`.
#[cfg(feature = "fault-injection")]
pub fn crash_point(point: &str) {
    if std::env::var("MESHMART_CRASH_AT").is_ok_and(|at| at == point) {
        eprintln!("crash point {point}: aborting");
        std::process::abort();
    }
}

/// Aborts the process here if `MESHMART_CRASH_AT` names `point` (only with the
/// `fault-injection` feature).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn crash_point(_point: &str) {}
