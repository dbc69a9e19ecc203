//! The console end to end (issue 4): the real binary in tmux on a seeded
//! database; keys sent with send-keys approve a pending request, the
//! in-process worker runs it, and both the database and the screen
//! (capture-pane) show it succeeded. Skipped with a notice when tmux is
//! missing on a developer's machine; in CI (`CI=true`) a missing tmux fails.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_prodops");

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// tmux on a socket of this test's own.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "console"]).stdout)
            .into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.run(&["send-keys", "-t", "console", key]);
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits until the screen satisfies `ok`; panics with the screen otherwise.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn prodops(home: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("PRODOPS_DB")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prodops {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts the console in tmux on `db`; the pane runs a shell that records
/// the exit status in `exit` and stays open, so the restored screen can be read.
fn start_console(tmux: &Tmux, home: &Path, db: &str, exit: &Path, extra: &str) {
    start_console_at(tmux, home, db, exit, extra, (200, 50), "");
}

/// [`start_console`] at `size`, with `env` (`NAME=value …`) added.
fn start_console_at(
    tmux: &Tmux,
    home: &Path,
    db: &str,
    exit: &Path,
    extra: &str,
    size: (u16, u16),
    env: &str,
) {
    let command = format!(
        "env XDG_DATA_HOME={h}/data XDG_CONFIG_HOME={h}/config {env} {BIN} --db {db} {extra}; echo EXIT=$? > {exit}; echo console-ended; sleep 30",
        h = home.display(),
        exit = exit.display()
    );
    let (width, height) = (size.0.to_string(), size.1.to_string());
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "console",
        "-x",
        &width,
        "-y",
        &height,
        &command,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
}

/// Waits for the exit file and returns its `EXIT=` line.
fn exit_status(exit: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exit.exists() {
        assert!(Instant::now() < deadline, "the console did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(100));
    std::fs::read_to_string(exit).unwrap().trim().to_string()
}

/// The pid of the console running on `db` (the prodops process itself, not
/// the shell around it, whose command line names the database too).
fn console_pid(db: &str) -> String {
    let out = Command::new("pgrep")
        .args(["-f", "--", &format!("--db {db}")])
        .output()
        .unwrap();
    let binary = std::fs::canonicalize(BIN).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary))
        .unwrap_or_else(|| panic!("no console process for {db}"))
        .to_string()
}

/// True (with a notice) when tmux is missing on a developer's machine; in CI it fails.
fn skip_without_tmux() -> bool {
    if tmux_available() {
        return false;
    }
    common::skipping("tmux is not installed (.ci/run installs it)");
    true
}

fn state_of(home: &Path, db: &str, id: &str) -> String {
    let json = prodops(home, &["--db", db, "--json", "request", "show", id]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["state"].as_str().unwrap_or_default().to_string()
}

#[test]
fn approving_a_pending_request_in_the_console_runs_it_and_the_screen_shows_it_succeeded() {
    if skip_without_tmux() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("console.db").display().to_string();
    prodops(home.path(), &["--db", &db, "demo", "--setup-only"]);
    prodops(
        home.path(),
        &[
            "--db",
            &db,
            "request",
            "clone",
            "C1",
            "--title",
            "Cosmic MC, second sample",
        ],
    );
    assert_eq!(state_of(home.path(), &db, "C2"), "pending_approval");

    let tmux = Tmux {
        socket: format!("prodops-test-{}", std::process::id()),
    };
    let exit_file = home.path().join("exit");
    start_console(&tmux, home.path(), &db, &exit_file, "--slots 2");

    tmux.wait_for("the console", |s| {
        s.contains("1 Campaigns") && s.contains("C2")
    });
    tmux.keys(&["5"]);
    tmux.wait_for("the pending request", |s| {
        s.contains("1 pending") && s.contains("Cosmic MC, second sample")
    });
    tmux.keys(&["a"]);
    tmux.wait_for("the confirmation", |s| s.contains("approve C2 ("));
    tmux.keys(&["Enter"]);
    tmux.wait_for("the approval", |s| {
        s.contains("C2 approved") || s.contains("0 pending")
    });

    let deadline = Instant::now() + Duration::from_secs(120);
    while state_of(home.path(), &db, "C2") != "succeeded" {
        assert!(
            Instant::now() < deadline,
            "C2 did not succeed: {}",
            state_of(home.path(), &db, "C2")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    tmux.keys(&["1"]);
    let screen = tmux.wait_for("C2 succeeded on screen", |s| {
        s.lines()
            .any(|l| l.contains("C2") && l.contains("succeeded") && l.contains("100.0%"))
    });
    assert!(screen.contains("worker: running"), "{screen}");

    tmux.keys(&["q"]);
    assert_eq!(exit_status(&exit_file), "EXIT=0");
    let after = tmux.wait_for("the shell after the console", |s| {
        s.contains("console-ended")
    });
    assert!(
        !after.contains("1 Campaigns"),
        "the terminal was restored:\n{after}"
    );
}

#[test]
fn sigterm_and_sighup_restore_the_terminal_and_exit_cleanly() {
    if skip_without_tmux() {
        return;
    }
    for signal in ["TERM", "HUP"] {
        let home = tempfile::tempdir().unwrap();
        let db = home
            .path()
            .join(format!("sig{signal}.db"))
            .display()
            .to_string();
        prodops(home.path(), &["--db", &db, "db", "init"]);
        let tmux = Tmux {
            socket: format!("prodops-sig-{signal}-{}", std::process::id()),
        };
        let exit_file = home.path().join("exit");
        start_console(&tmux, home.path(), &db, &exit_file, "--no-worker");
        tmux.wait_for("the console", |s| s.contains("1 Campaigns"));
        let pid = console_pid(&db);
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert_eq!(exit_status(&exit_file), "EXIT=0", "SIG{signal}");
        let after = tmux.wait_for("the shell after the console", |s| {
            s.contains("console-ended")
        });
        assert!(
            !after.contains("1 Campaigns"),
            "SIG{signal}: the terminal was restored:\n{after}"
        );
    }
}

#[test]
fn a_console_killed_mid_run_leaves_work_that_batch_mode_finishes_without_duplicates() {
    if skip_without_tmux() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("killed.db").display().to_string();
    let work = home.path().join("work");
    prodops(home.path(), &["--db", &db, "demo", "--setup-only"]);
    let script = home.path().join("slow.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nsleep 0.4\necho \"PRODOPS_EVENTS $PRODOPS_EVENTS\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let request = home.path().join("slow.toml");
    std::fs::write(
        &request,
        "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"slow\"\n[defaults]\nrelease = \"v1\"\n[[stage]]\nname = \"gen\"\nscript = \"slow.sh\"\nevents = 120\nevents_per_job = 10\nseed_base = 1\n",
    )
    .unwrap();
    prodops(
        home.path(),
        &[
            "--db",
            &db,
            "request",
            "new",
            &request.display().to_string(),
        ],
    );
    prodops(home.path(), &["--db", &db, "approve", "C2"]);
    let tmux = Tmux {
        socket: format!("prodops-kill-{}", std::process::id()),
    };
    let exit_file = home.path().join("exit");
    let extra = format!("--slots 1 --work-dir {}", work.display());
    start_console(&tmux, home.path(), &db, &exit_file, &extra);
    tmux.wait_for("C2 under way", |s| {
        s.lines().any(|l| l.contains("C2") && l.contains("running"))
    });
    let pid = console_pid(&db);
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    exit_status(&exit_file);
    assert_eq!(
        state_of(home.path(), &db, "C2"),
        "running",
        "killed mid-run"
    );
    let work_dir = work.display().to_string();
    prodops(
        home.path(),
        &[
            "--db",
            &db,
            "--batch",
            "--slots",
            "2",
            "--work-dir",
            &work_dir,
        ],
    );
    assert_eq!(state_of(home.path(), &db, "C2"), "succeeded");
    let launched = prodops::batch::local::launches(&work.join("local"));
    let mut names = launched.clone();
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        launched.len(),
        names.len(),
        "a job was launched twice: {launched:?}"
    );
    assert_eq!(names.len(), 25 + 12, "every job of C1 and C2 ran once");
}

/// The pane's terminal modes as tmux tracks them: alternate screen and
/// mouse reporting (any motion, the mode crossterm's capture turns on).
fn terminal_modes(tmux: &Tmux) -> String {
    let out = tmux.run(&[
        "display-message",
        "-p",
        "-t",
        "console",
        "#{alternate_on}#{mouse_any_flag}",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn i1_a_panic_in_the_console_leaves_no_mouse_reporting_and_no_alternate_screen() {
    if skip_without_tmux() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("panic.db").display().to_string();
    prodops(home.path(), &["--db", &db, "db", "init"]);
    let tmux = Tmux {
        socket: format!("prodops-panic-{}", std::process::id()),
    };
    let exit_file = home.path().join("exit");
    start_console_at(
        &tmux,
        home.path(),
        &db,
        &exit_file,
        "--no-worker",
        (80, 24),
        "PRODOPS_FAILPOINT=console:key",
    );
    tmux.wait_for("the console", |s| s.contains("1 Campaigns"));
    assert_eq!(
        terminal_modes(&tmux),
        "11",
        "the console itself turns them on"
    );
    tmux.keys(&["j"]);
    let status = exit_status(&exit_file);
    assert_ne!(status, "EXIT=0", "the failpoint panicked");
    tmux.wait_for("the shell after the panic", |s| s.contains("console-ended"));
    assert_eq!(
        terminal_modes(&tmux),
        "00",
        "after a panic: main screen, no mouse reporting"
    );
}

/// Sends `keys` one by one, returning how many were sent.
fn typed(tmux: &Tmux, keys: &[&str]) -> usize {
    tmux.keys(keys);
    keys.len()
}

#[test]
fn operator_tasks_take_few_keys_from_the_console_home_at_80_by_24() {
    if skip_without_tmux() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("walk.db").display().to_string();
    let work = home.path().join("work").display().to_string();
    let run = |args: &[&str]| prodops(home.path(), &[&["--db", &db][..], args].concat());
    run(&["demo", "--setup-only"]);
    let fail = home.path().join("fail.sh");
    std::fs::write(
        &fail,
        "#!/bin/sh\necho 'FATAL: bad geometry file' >&2\nexit 3\n",
    )
    .unwrap();
    let slow = home.path().join("slow.sh");
    std::fs::write(&slow, "#!/bin/sh\nsleep 60\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for script in [&fail, &slow] {
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let request = |name: &str, script: &str, priority: u32| {
        let path = home.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!("experiment = \"nova\"\nkind = \"mc\"\ntitle = \"{name}\"\npriority = {priority}\n[defaults]\nrelease = \"v1\"\nmax_attempts = 1\n[[stage]]\nname = \"gen\"\nscript = \"{script}\"\nevents = 20\nevents_per_job = 10\nseed_base = 1\n"),
        )
        .unwrap();
        path.display().to_string()
    };
    run(&["request", "new", &request("broken", "fail.sh", 50)]);
    run(&["approve", "C2"]);
    run(&["--batch", "--work-dir", &work]);
    run(&["request", "clone", "C1", "--title", "Cosmic MC, again"]);
    run(&["request", "new", &request("long", "slow.sh", 90)]);
    run(&["approve", "C4"]);

    let tmux = Tmux {
        socket: format!("prodops-walk-{}", std::process::id()),
    };
    let exit_file = home.path().join("exit");
    let extra = format!("--slots 2 --work-dir {work}");
    start_console_at(&tmux, home.path(), &db, &exit_file, &extra, (80, 24), "");
    tmux.wait_for("C4 running first in the tree", |s| {
        s.lines().any(|l| l.contains("C4") && l.contains("running"))
    });
    let go_home = || {
        tmux.keys(&[":", "c", " ", "4", "Enter"]);
        tmux.wait_for("home", |s| s.contains("1 Campaigns"));
    };

    let keys = typed(&tmux, &["2"]);
    tmux.wait_for("C4's DAG", |s| s.contains("2 DAG") && s.contains("● gen"));
    assert!(keys <= 3, "the DAG took {keys} keys");

    go_home();
    let keys = typed(&tmux, &["4", "Enter"]);
    tmux.wait_for("why the job failed", |s| {
        s.contains("exit code 3") && s.contains("FATAL: bad geometry file")
    });
    assert!(keys <= 3, "reading a failure took {keys} keys");

    go_home();
    let keys = typed(&tmux, &["4", "R"]);
    tmux.wait_for("the group's confirmation", |s| {
        s.contains("resubmit 2 failed jobs of `exit code 3`")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_for("the resubmission", |s| {
        s.contains("2 of 2 jobs resubmitted")
    });
    assert!(keys <= 3, "resubmitting a group took {keys} keys");

    go_home();
    let keys = typed(&tmux, &["5"]);
    tmux.wait_for("the clone's changes", |s| {
        s.contains("against C1") && s.contains("C3")
    });
    let keys = keys + typed(&tmux, &["a"]);
    tmux.wait_for("the approval's confirmation", |s| {
        s.contains("approve C3 (")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_for("the approval", |s| s.contains("C3 approved"));
    assert!(keys <= 3, "approving a clone took {keys} keys");

    go_home();
    let mut keys = typed(&tmux, &["h"]);
    tmux.wait_for("the hold's confirmation", |s| s.contains("hold C4 ("));
    keys += typed(&tmux, &["Enter"]);
    tmux.wait_for("the hold", |s| s.contains("C4 held"));
    keys += typed(&tmux, &["l"]);
    tmux.wait_for("the release's confirmation", |s| s.contains("release C4 ("));
    keys += typed(&tmux, &["Enter"]);
    tmux.wait_for("the release", |s| s.contains("C4 released"));
    assert!(keys <= 6, "hold and release took {keys} keys");
    assert_eq!(state_of(home.path(), &db, "C4"), "running");

    tmux.keys(&["q"]);
    assert_eq!(exit_status(&exit_file), "EXIT=0");
}
