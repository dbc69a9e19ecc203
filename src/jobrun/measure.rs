//! What a running script uses, read from `/proc`: its process tree, their
//! resident memory and CPU time. Sampled by the runner every tick.

use std::collections::HashMap;
use std::fs;

/// CPU and memory of a process tree at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Resident memory of all processes in the tree, KiB.
    pub rss_kb: i64,
    /// CPU time (user + system, including reaped children) of the tree, ms.
    pub cpu_ms: i64,
}

/// One line of `/proc/<pid>/stat`, the fields we need.
struct Stat {
    ppid: i32,
    own_cpu_ticks: i64,
    cpu_ticks: i64,
    rss_pages: i64,
}

/// Parses `/proc/<pid>/stat`; the command name may hold spaces and parentheses.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<i64>().ok());
    let own_cpu_ticks = field(14)? + field(15)?;
    let cpu_ticks = own_cpu_ticks + field(16)? + field(17)?;
    Some(Stat {
        ppid: field(4)? as i32,
        own_cpu_ticks,
        cpu_ticks,
        rss_pages: field(24)?,
    })
}

/// Every process on the machine with its `stat` (those that vanish meanwhile are skipped).
fn all_processes() -> HashMap<i32, Stat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some((pid, parse_stat(&text)?))
    })
    .collect()
}

/// `root` and all its descendants.
fn tree_of(root: i32, procs: &HashMap<i32, Stat>) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, stat) in procs {
        children.entry(stat.ppid).or_default().push(*pid);
    }
    let mut tree = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if procs.contains_key(&pid) {
            tree.push(pid);
            stack.extend(children.get(&pid).into_iter().flatten());
        }
    }
    tree
}

/// Samples the tree rooted at `root`; zero when it has gone.
pub fn sample_tree(root: i32) -> Sample {
    let procs = all_processes();
    let tick_ms = 1000 / clock_ticks_per_second();
    let page_kb = page_size() / 1024;
    tree_of(root, &procs)
        .iter()
        .fold(Sample::default(), |acc, pid| {
            let stat = &procs[pid];
            Sample {
                rss_kb: acc.rss_kb + stat.rss_pages * page_kb,
                cpu_ms: acc.cpu_ms + stat.cpu_ticks * tick_ms,
            }
        })
}

/// CPU time (user + system) of process `pid` itself, without its children, ms.
pub fn cpu_ms_of_process(pid: i32) -> Option<i64> {
    let stat = parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    Some(stat.own_cpu_ticks * 1000 / clock_ticks_per_second())
}

/// The pids of the tree rooted at `root`, for killing it.
pub fn pids_of_tree(root: i32) -> Vec<i32> {
    tree_of(root, &all_processes())
}

fn clock_ticks_per_second() -> i64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks
    } else {
        100
    }
}

fn page_size() -> i64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_reads_fields_after_a_name_with_spaces_and_parens() {
        let text = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194304 100 0 0 0 150 50 7 3 20 0 1 0 555 12345678 300 18446744073709551615";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.ppid, 17);
        assert_eq!(stat.own_cpu_ticks, 150 + 50);
        assert_eq!(stat.cpu_ticks, 150 + 50 + 7 + 3);
        assert_eq!(stat.rss_pages, 300);
    }

    #[test]
    fn sample_tree_sees_this_process_memory() {
        let me = std::process::id() as i32;
        let sample = sample_tree(me);
        assert!(sample.rss_kb > 0, "{sample:?}");
        assert!(pids_of_tree(me).contains(&me));
    }

    #[test]
    fn sample_tree_of_a_missing_process_is_zero() {
        assert_eq!(sample_tree(i32::MAX), Sample::default());
    }
}
