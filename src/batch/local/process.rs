//! Processes of jobs as `/proc` shows them: identified against pid reuse by
//! their start time, signalled as process groups.

use std::fs;
use std::path::Path;

/// A job's script process (the leader of its process group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// Process id.
    pub pid: i32,
    /// Start time (field 22 of `/proc/<pid>/stat`).
    pub start: u64,
}

impl Proc {
    /// The process `pid` as it is now, if it exists.
    pub fn of(pid: i32) -> Option<Proc> {
        Some(Proc {
            pid,
            start: proc_stat(pid)?.1,
        })
    }

    /// True while the process runs (not a zombie) and is the one we started.
    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((state, start))
            if start == self.start && !matches!(state, 'Z' | 'X' | 'x'))
    }

    /// Sends `signal` to its process group.
    pub fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(-self.pid, signal);
        }
    }
}

/// State letter and start time (field 22) from `/proc/<pid>/stat`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields.get(19)?.parse().ok()?))
}

/// A live process whose environment says it works in `work_dir`
/// (`PRODOPS_WORK_DIR`): a job's script whose pid was never recorded.
pub fn find_by_work_dir(work_dir: &Path) -> Option<Proc> {
    let wanted = format!("PRODOPS_WORK_DIR={}", work_dir.display());
    fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
        })
        .filter_map(Proc::of)
        .find(Proc::alive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = Proc::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        let reused = Proc {
            start: me.start + 1,
            ..me
        };
        assert!(!reused.alive());
        assert!(Proc::of(i32::MAX).is_none());
    }

    #[test]
    fn a_process_is_found_by_its_work_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .env("PRODOPS_WORK_DIR", dir.path())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = find_by_work_dir(dir.path());
        while found.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            found = find_by_work_dir(dir.path());
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found.map(|p| p.pid), Some(child.id() as i32));
        assert!(find_by_work_dir(&dir.path().join("other")).is_none());
    }
}
