//! Time as prodops stores it: milliseconds since the Unix epoch, UTC. Every
//! layer asks this one clock, so no layer imports another just for the time.

/// Current time in milliseconds since the Unix epoch, the unit of every stored time.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
