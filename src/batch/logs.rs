//! Reading a job's logs and records from files, for the backends whose jobs
//! leave them on a file system the worker sees.

use super::BatchError;
use std::fs;
use std::io::{self, Read, Seek};
use std::path::Path;

/// How much of each output log a backend returns.
pub const LOG_TAIL_BYTES: u64 = 256 * 1024;

/// The last [`LOG_TAIL_BYTES`] of a log; empty when it does not exist.
pub fn read_tail(system: &str, path: &Path) -> Result<String, BatchError> {
    let mut file = match fs::File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        other => other.map_err(|e| io_error(system, path, e))?,
    };
    let len = file
        .metadata()
        .map_err(|e| io_error(system, path, e))?
        .len();
    file.seek(io::SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))
        .map_err(|e| io_error(system, path, e))?;
    let mut bytes = Vec::new();
    file.take(LOG_TAIL_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(system, path, e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A whole file, `None` when it does not exist.
pub fn read_optional(system: &str, path: &Path) -> Result<Option<String>, BatchError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(system, path, e)),
    }
}

/// An I/O error of batch system `system` on `path`.
pub fn io_error(system: &str, path: &Path, source: io::Error) -> BatchError {
    BatchError::Io {
        system: system.into(),
        path: path.display().to_string(),
        source,
    }
}
