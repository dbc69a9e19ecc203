//! This machine, as every layer names it: the lease holder, a job's node,
//! a batch-system instance (`local@HOST:DIR`).

/// This machine's name (`localhost` when the system will not say); read
/// once per process.
pub fn hostname() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(read_hostname).clone()
}

fn read_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length and gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match String::from_utf8_lossy(&buf[..end]).into_owned() {
        name if rc == 0 && !name.is_empty() => name,
        _ => "localhost".to_string(),
    }
}
