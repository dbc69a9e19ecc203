//! The tools users would otherwise pick, on the `dag-1000` workload: GNU
//! make (`-j2`, the floor for dependency-driven launching), Snakemake
//! (`--cores 2`) and Luigi (local scheduler, 2 workers). Each gets the same
//! chains of `true` jobs and is timed as a whole process, with its peak
//! resident memory; each run checks that every chain's last job ran.

use anyhow::{ensure, Context};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// A peer's run: wall time and the peak resident memory of its largest process.
#[derive(Debug, Clone, Copy)]
pub(super) struct PeerRun {
    /// Wall seconds.
    pub(super) seconds: f64,
    /// Peak resident memory, MB.
    pub(super) peak_mb: f64,
}

/// Runs `cmd` to its end: wall time, peak RSS (wait4's, over the process
/// and the descendants it waited for) and CPU seconds; fails unless it exits 0.
pub(super) fn run_measured(cmd: &mut Command) -> anyhow::Result<(PeerRun, f64)> {
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let (status, usage) = crate::jobrun::stages::wait4(child.id() as i32)?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed (wait status {status})"
    );
    let cpu = crate::jobrun::stages::cpu_ms_of(&usage) as f64 / 1000.0;
    Ok((
        PeerRun {
            seconds,
            peak_mb: usage.ru_maxrss as f64 * 1024.0 / 1e6,
        },
        cpu,
    ))
}

/// `make -j2` over a Makefile of phony targets, `c<c>_<k>` after `c<c>_<k-1>`.
pub(super) fn make(dir: &Path, chains: usize, length: usize) -> anyhow::Result<Option<PeerRun>> {
    if !on_path("make") {
        return Ok(None);
    }
    let work = dir.join("make");
    std::fs::create_dir_all(&work)?;
    let target = |c: usize, k: usize| format!("c{c}_{k}");
    let all: Vec<String> = (0..chains)
        .flat_map(|c| (0..length).map(move |k| target(c, k)))
        .collect();
    let mut makefile = format!(".PHONY: all {}\nall:", all.join(" "));
    for c in 0..chains {
        makefile += &format!(" {}", target(c, length - 1));
    }
    makefile.push('\n');
    for c in 0..chains {
        for k in 0..length {
            let after = if k > 0 {
                target(c, k - 1)
            } else {
                String::new()
            };
            makefile += &format!("{}: {after}\n\t@true\n", target(c, k));
        }
    }
    std::fs::write(work.join("Makefile"), makefile)?;
    let (run, _) = run_measured(
        Command::new("make")
            .args(["-j2", "-s", "-f", "Makefile"])
            .current_dir(&work)
            .stdout(Stdio::null()),
    )?;
    Ok(Some(run))
}

/// Snakemake with `--cores 2`, each job `true` then touching its output.
pub(super) fn snakemake(
    dir: &Path,
    venv: &Path,
    chains: usize,
    length: usize,
) -> anyhow::Result<Option<PeerRun>> {
    let exe = venv.join("bin/snakemake");
    if !exe.is_file() {
        return Ok(None);
    }
    let work = dir.join("snakemake");
    std::fs::create_dir_all(&work)?;
    let last = length - 1;
    std::fs::write(
        work.join("Snakefile"),
        format!(
            r#"rule all:
    input: expand("out/c{{c}}_{last}", c=range({chains}))

rule first:
    output: "out/c{{c}}_0"
    shell: "true && touch {{output}}"

rule step:
    input: lambda w: f"out/c{{w.c}}_{{int(w.k) - 1}}"
    output: "out/c{{c}}_{{k}}"
    wildcard_constraints: k="[1-9][0-9]*"
    shell: "true && touch {{output}}"
"#
        ),
    )?;
    let log = std::fs::File::create(work.join("snakemake.log"))?;
    let (run, _) = run_measured(
        Command::new(exe)
            .args(["--cores", "2", "--snakefile", "Snakefile"])
            .current_dir(&work)
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    check_outputs(&work, chains, last)?;
    Ok(Some(run))
}

/// Luigi with the local scheduler and 2 workers, each task running `true`
/// then writing its target.
pub(super) fn luigi(
    dir: &Path,
    venv: &Path,
    chains: usize,
    length: usize,
) -> anyhow::Result<Option<PeerRun>> {
    let python = venv.join("bin/python");
    let has_luigi = python.is_file()
        && Command::new(&python)
            .args(["-c", "import luigi"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !has_luigi {
        return Ok(None);
    }
    let work = dir.join("luigi");
    std::fs::create_dir_all(&work)?;
    std::fs::write(
        work.join("dag.py"),
        r#"import subprocess, sys
import luigi

CHAINS, LENGTH = int(sys.argv[1]), int(sys.argv[2])

class Step(luigi.Task):
    c = luigi.IntParameter()
    k = luigi.IntParameter()

    def requires(self):
        return [Step(c=self.c, k=self.k - 1)] if self.k > 0 else []

    def output(self):
        return luigi.LocalTarget(f"out/c{self.c}_{self.k}")

    def run(self):
        subprocess.run(["true"], check=True)
        with self.output().open("w") as f:
            f.write("")

ok = luigi.build([Step(c=c, k=LENGTH - 1) for c in range(CHAINS)],
                 local_scheduler=True, workers=2, log_level="WARNING")
sys.exit(0 if ok else 1)
"#,
    )?;
    let log = std::fs::File::create(work.join("luigi.log"))?;
    let (run, _) = run_measured(
        Command::new(python)
            .arg("dag.py")
            .arg(chains.to_string())
            .arg(length.to_string())
            .current_dir(&work)
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    check_outputs(&work, chains, length - 1)?;
    Ok(Some(run))
}

/// Fails unless every chain's last output exists.
fn check_outputs(work: &Path, chains: usize, last: usize) -> anyhow::Result<()> {
    let missing = (0..chains)
        .filter(|c| !work.join(format!("out/c{c}_{last}")).exists())
        .count();
    ensure!(
        missing == 0,
        "{missing} of {chains} chains did not finish in {}",
        work.display()
    );
    Ok(())
}

/// True when `program` is found on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
