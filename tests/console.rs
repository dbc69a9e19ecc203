//! The console on ratatui's `TestBackend`, driven key by key through the
//! shipped keymaps on a database seeded once per run (a real Monte-Carlo
//! campaign that succeeded, one that failed, a pending clone): every pane
//! at 80×24 and 200×60, dark and NO_COLOR, and the items of the console
//! field trial (issue 14), each test named after what it proves.

mod common;

use common::{file_and_approve, local_worker, mc_request, World};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use prodops::model::ids::CampaignId;
use prodops::ops::{Actor, Ops};
use prodops::store::Store;
use prodops::tui::action::Action;
use prodops::tui::app::{App, Effect, Pane};
use prodops::tui::data::{self, Command};
use prodops::tui::keymap::{Keymap, SHIPPED};
use prodops::tui::popup::Popup;
use prodops::tui::theme::{Slot, Theme};
use prodops::worker::{Throttles, Worker};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ratatui::Terminal;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The seeded database and work directory every test copies.
struct Template {
    db: PathBuf,
    work: PathBuf,
}

/// A request whose only stage prints 40 log lines (every tenth a
/// checkpoint) and fails both its jobs with exit 3.
fn failing_request(dir: &Path) -> PathBuf {
    common::script(
        dir,
        "fail.sh",
        "i=1\nwhile [ $i -le 40 ]; do\n  echo \"processing event $i\"\n  [ $((i % 10)) -eq 0 ] && echo \"checkpoint $i\"\n  i=$((i+1))\ndone\necho 'FATAL: bad geometry file' >&2\nexit 3",
    );
    let request = dir.join("failing.toml");
    std::fs::write(
        &request,
        "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"Broken geometry\"\n[defaults]\nrelease = \"v1\"\nmax_attempts = 1\nresources = { memory_mb = 100, wall_hours = 1 }\n[[stage]]\nname = \"gen\"\nscript = \"fail.sh\"\nevents = 20\nevents_per_job = 10\nseed_base = 7\n",
    )
    .unwrap();
    request
}

/// C1 succeeded (the example campaign, run for real), C2 failed (2 jobs,
/// exit 3), C3 pending approval: a clone of C1 retitled, with fewer events,
/// C4 approved with 2 jobs not submitted yet.
async fn seed(dir: &Path) -> Template {
    let db = dir.join("console.db");
    let work = dir.join("work");
    let store = Store::create(&db.display().to_string()).await.unwrap();
    let w = common::register(&store).await;
    let worker = local_worker(&store, &work, 2, Throttles::default()).await;
    for path in [mc_request(), failing_request(dir)] {
        file_and_approve(&w, &path).await;
    }
    tokio::time::timeout(Duration::from_secs(180), worker.run_until_idle(|_| {}))
        .await
        .unwrap()
        .unwrap();
    let clone =
        w.ed.request_clone(CampaignId(1), Some("Cosmic MC, again"))
            .await
            .unwrap();
    let edited = dir.join("edited.toml");
    let text = std::fs::read_to_string(mc_request())
        .unwrap()
        .replace("Cosmic MC, FHC, 1000 events", "Cosmic MC, again")
        .replace("events         = 1000", "events         = 500")
        .replace("events_at_least = 1000", "events_at_least = 500")
        .replace(
            "\"scripts/",
            &format!("\"{}/examples/scripts/", env!("CARGO_MANIFEST_DIR")),
        );
    std::fs::write(&edited, text).unwrap();
    let id: CampaignId = clone.summary.id.parse().unwrap();
    w.ed.request_edit(id, &edited).await.unwrap();
    file_waiting_campaign(&w, dir, &work).await;
    store.close().await;
    Template { db, work }
}

/// C4: approved and split into 2 jobs that no batch system has yet (a
/// worker that may submit nothing passes once).
async fn file_waiting_campaign(w: &World, dir: &Path, work: &Path) {
    common::script(dir, "wait.sh", "sleep 1");
    let request = dir.join("waiting.toml");
    std::fs::write(
        &request,
        "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"Waiting\"\n[defaults]\nrelease = \"v1\"\n[[stage]]\nname = \"gen\"\nscript = \"wait.sh\"\nevents = 20\nevents_per_job = 10\nseed_base = 3\n",
    )
    .unwrap();
    file_and_approve(w, &request).await;
    let none = Throttles {
        per_pass: 0,
        ..Throttles::default()
    };
    let worker = local_worker(&w.store, work, 2, none).await;
    worker.pass().await.unwrap();
}

/// The seeded template, made once per run on a thread of its own.
fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("console-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(seed(&dir))
        })
        .join()
        .unwrap()
    })
}

/// A console on a copy of the template, as `ann` (approver) unless said.
struct Console {
    world: World,
    worker: Worker,
    app: App,
    width: u16,
    height: u16,
    /// Commands the keys asked to run.
    ran: Vec<Command>,
    _dir: tempfile::TempDir,
}

async fn console_as(user: &str, readonly: bool, theme: Theme) -> Console {
    let t = template();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("console.db");
    std::fs::copy(&t.db, &db).unwrap();
    let store = Store::open(&db.display().to_string()).await.unwrap();
    let world = common::users_of(&store);
    let worker = local_worker(&store, &t.work, 2, Throttles::default()).await;
    let app = App::new(Keymap::default_map(), theme, user, "console.db", readonly);
    let mut c = Console {
        world,
        worker,
        app,
        width: 200,
        height: 60,
        ran: Vec::new(),
        _dir: dir,
    };
    c.settle().await;
    c
}

async fn console() -> Console {
    console_as("ann", false, Theme::default_theme()).await
}

impl Console {
    fn ops(&self) -> &Ops {
        match self.app.user.as_str() {
            "root" => &self.world.root,
            "gus" => &self.world.gus,
            "ed" => &self.world.ed,
            _ => &self.world.ann,
        }
    }

    /// Loads what the view asks for until it stops changing, drawing in
    /// between (as the loader and the UI loop do).
    async fn settle(&mut self) {
        for _ in 0..5 {
            let view = self.app.view();
            if self.app.loaded_at.is_some() && view == self.app.snap.view {
                break;
            }
            let snap = data::load(self.ops(), Some(&self.worker), &view).await;
            assert!(snap.error.is_none(), "{:?}", snap.error);
            self.app.on_snapshot(snap);
            self.screen();
        }
    }

    /// The screen as text, one line per row.
    fn screen(&mut self) -> String {
        text_of(&self.draw())
    }

    fn draw(&mut self) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(self.width, self.height)).unwrap();
        terminal
            .draw(|f| prodops::tui::panes::draw(f, &mut self.app))
            .unwrap();
        terminal.backend().buffer().clone()
    }

    /// Types keys by name (`a`, `enter`, `S-down`, `pgdn`), drawing and
    /// loading after each as the console would.
    async fn keys(&mut self, keys: &[&str]) {
        for name in keys {
            for effect in self.app.on_key(key(name)) {
                if let Effect::Run(command) = effect {
                    self.ran.push(command);
                }
            }
            self.screen();
            self.settle().await;
        }
    }

    /// Runs the commands the keys asked for, as the command task does.
    async fn run(&mut self) -> Vec<Result<String, String>> {
        let mut results = Vec::new();
        for command in std::mem::take(&mut self.ran) {
            results.push(data::execute(self.ops(), command).await);
        }
        self.app.loaded_at = None;
        self.settle().await;
        results
    }

    fn at(&mut self, width: u16, height: u16) -> &mut Self {
        self.width = width;
        self.height = height;
        self
    }
}

/// The key a name stands for.
fn key(name: &str) -> KeyEvent {
    let code = match name {
        "enter" => KeyCode::Enter,
        "esc" => KeyCode::Esc,
        "tab" => KeyCode::Tab,
        "backtab" => KeyCode::BackTab,
        "up" | "S-up" => KeyCode::Up,
        "down" | "S-down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "pgup" => KeyCode::PageUp,
        "pgdn" => KeyCode::PageDown,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "space" => KeyCode::Char(' '),
        "bs" => KeyCode::Backspace,
        c if c.chars().count() == 1 => KeyCode::Char(c.chars().next().unwrap()),
        other => panic!("no key named {other}"),
    };
    let mods = if name.starts_with("S-") {
        KeyModifiers::SHIFT
    } else {
        KeyModifiers::NONE
    };
    KeyEvent::new(code, mods)
}

/// The characters of `text` as key names.
fn typed(text: &str) -> Vec<String> {
    text.chars().map(|c| c.to_string()).collect()
}

fn text_of(buffer: &Buffer) -> String {
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn uses_colour(buffer: &Buffer) -> bool {
    buffer
        .content()
        .iter()
        .any(|c| c.fg != Color::Reset || c.bg != Color::Reset)
}

fn assert_shows(screen: &str, what: &[&str], context: &str) {
    for w in what {
        assert!(screen.contains(w), "{context} should show `{w}`:\n{screen}");
    }
}

// ── every pane ──────────────────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pane_renders_states_counts_and_key_hints_at_both_sizes_in_dark_and_no_color() {
    let expect: &[(&[&str], &[&str], &[&str])] = &[
        // (keys from home, shown at both sizes, shown at 200×60 only)
        (
            &[":", "c", " ", "1", "enter", "enter"],
            &["Campaigns", "nova", "C1", "succeeded", "expand/collapse"],
            &[
                "C2",
                "failed",
                "T1",
                "100.0%",
                "20 events failed",
                "clone C1",
            ],
        ),
        (
            &["2"],
            &["DAG", "gen", "succeeded", "10 jobs"],
            &["sim", "reco", "10 ok", "3 nodes in 3 layers"],
        ),
        (
            &[":", "c", " ", "2", "enter", "3"],
            &["Jobs", "J", "failed", "of 2"],
            &[
                "batch id",
                "in state",
                "prodops-j",
                "open J",
                "exit",
                "cause",
            ],
        ),
        (
            &[":", "c", " ", "2", "enter", "3", "enter"],
            &["Job", "failed", "exit code 3"],
            &["stage-in", "run", "bad geometry file", "stop following"],
        ),
        (
            &[":", "c", " ", "2", "enter", "4"],
            &["Triage", "exit code 3"],
            &[
                "2 failed jobs in 1 group",
                "local",
                "resubmit group (2 jobs)",
            ],
        ),
        (
            &["5"],
            &["Approvals", "1 pending", "C3"],
            &["against C1", "events = 1000", "events = 500", "approve C3"],
        ),
        (
            &["6"],
            &["History", "C1"],
            &[
                "pending_approval",
                "approved",
                "every task succeeded",
                "worker",
            ],
        ),
    ];
    for (keys, both, large) in expect {
        for (theme, name) in [
            (Theme::default_theme(), "dark"),
            (Theme::default_theme().without_colour(), "NO_COLOR"),
        ] {
            let mut c = console_as("ann", false, theme).await;
            c.keys(keys).await;
            for (w, h) in [(80, 24), (200, 60)] {
                let buffer = c.at(w, h).draw();
                let screen = text_of(&buffer);
                let context = format!("{keys:?} at {w}×{h} {name}");
                assert_shows(&screen, both, &context);
                if w == 200 {
                    assert_shows(&screen, large, &context);
                }
                assert_eq!(
                    uses_colour(&buffer),
                    name == "dark",
                    "{context}: colour use"
                );
            }
        }
    }
}

#[test]
fn both_shipped_keymaps_reach_every_action_and_help_lists_them() {
    for (name, _) in SHIPPED {
        let (keymap, problems) = Keymap::load(name, None);
        assert!(problems.is_empty(), "{name}: {problems:?}");
        let a = App::new(keymap.clone(), Theme::default_theme(), "ann", "x", false);
        let help: String = a
            .help_lines()
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        for action in Action::ALL {
            assert!(
                !keymap.keys_of(*action).is_empty(),
                "{name}: `{}` has no key",
                action.name()
            );
            assert!(
                help.contains(&format!(":{}", action.name())),
                "{name}: help lacks {}",
                action.name()
            );
            let key = keymap.keys_of(*action)[0].to_string();
            assert!(
                help.contains(&key),
                "{name}: help lacks key {key} of {}",
                action.name()
            );
        }
    }
}

#[test]
fn no_shipped_key_is_a_tmux_or_screen_prefix() {
    for (name, _) in SHIPPED {
        let (keymap, _) = Keymap::load(name, None);
        for action in Action::ALL {
            for key in keymap.keys_of(*action) {
                let k = key.to_string();
                assert!(
                    !["ctrl-a", "ctrl-b", "ctrl-h", "ctrl-j", "ctrl-k", "ctrl-l"]
                        .contains(&k.as_str()),
                    "{name}: {k}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_by_key_asks_first_then_runs_through_ops_with_the_users_role() {
    let mut c = console().await;
    c.keys(&["5", "a"]).await;
    assert!(c.ran.is_empty(), "approve asks first");
    let screen = c.at(120, 40).screen();
    assert!(
        screen.contains("approve C3 (Cosmic MC, again)?"),
        "{screen}"
    );
    c.keys(&["enter"]).await;
    let [Command::Approve(..)] = c.ran.as_slice() else {
        panic!("{:?}", c.ran)
    };
    let command = c.ran[0].clone();
    assert_eq!(c.run().await, vec![Ok("C3 approved".to_string())]);
    let refused = data::execute(&c.world.gus, command).await.unwrap_err();
    assert!(refused.contains("forbidden"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_hides_and_refuses_every_state_change() {
    let mut c = console_as("ann", true, Theme::default_theme()).await;
    c.keys(&["5"]).await;
    for action in Action::ALL.iter().filter(|a| a.mutates()) {
        assert!(c.app.apply(*action).is_empty(), "{}", action.name());
        assert!(
            c.app.popup.is_none(),
            "{} asked for confirmation",
            action.name()
        );
    }
    let screen = c.at(200, 60).screen();
    assert!(!screen.contains("a approve"), "{screen}");
    c.keys(&["?"]).await;
    let help = c.at(200, 80).screen();
    assert!(!help.contains("approve C3"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_a_triage_group_reruns_only_its_jobs() {
    let mut c = console_as("root", false, Theme::default_theme()).await;
    c.keys(&[":", "c", " ", "2", "enter", "4", "R", "enter"])
        .await;
    assert_eq!(
        c.run().await,
        vec![Ok("2 of 2 jobs resubmitted".to_string())]
    );
    assert_eq!(
        common::rows(&c.world.store, "jobs").await,
        25 + 2 + 2 + 2,
        "C1's 25 jobs, C2's 2 failed and their 2 new attempts, C4's 2"
    );
}

// ── issue 14, item by item ──────────────────────────────────────────────────

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_typing_colon_and_tab_on_an_empty_command_line_never_panics() {
    let mut c = console().await;
    for size in [(80, 24), (200, 60)] {
        c.at(size.0, size.1);
        c.keys(&[":"]).await;
        let screen = c.screen();
        assert!(screen.contains("tab: campaign"), "{screen}");
        c.keys(&["tab"]).await;
        assert_eq!(c.app.input.as_ref().unwrap().text, "campaign");
        c.keys(&["esc"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i2_a_hold_says_what_it_does_and_holds_running_jobs_only_when_asked() {
    let mut c = console_as("root", false, Theme::default_theme()).await;
    c.keys(&[":", "c", " ", "4", "enter", "1", "h"]).await;
    let screen = c.at(100, 30).screen();
    assert!(
        screen.contains("holds its queued jobs; running jobs go on"),
        "{screen}"
    );
    assert!(screen.contains("[ ] hold running jobs too"), "{screen}");
    assert!(!screen.contains("SIGSTOP"), "{screen}");
    c.keys(&["tab"]).await;
    let screen = c.screen();
    assert!(screen.contains("[x] hold running jobs too"), "{screen}");
    assert!(
        screen.contains("local: the local executor stops them (SIGSTOP)"),
        "each backend's effect is named: {screen}"
    );
    c.keys(&["enter"]).await;
    assert!(
        matches!(c.ran.as_slice(), [Command::Hold(_, _, true)]),
        "{:?}",
        c.ran
    );
    assert_eq!(c.run().await, vec![Ok("C4 held".to_string())]);
    let mut conn = c.world.store.pool().acquire().await.unwrap();
    let scope = prodops::store::campaigns::hold_scope(&mut conn, 4)
        .await
        .unwrap();
    assert_eq!(scope, prodops::model::hold::HoldScope::Running);
    c.keys(&["h"]).await;
    assert!(
        c.app.popup.is_none(),
        "a held campaign offers release, not hold"
    );
    c.keys(&["l", "enter"]).await;
    assert_eq!(c.run().await, vec![Ok("C4 released".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i4_log_search_goes_forward_and_back_counts_matches_and_scrolls_freely() {
    let mut c = console().await;
    c.at(120, 40);
    c.keys(&[":", "c", " ", "2", "enter", "3", "enter"]).await;
    filter(&mut c, "checkpoint").await;
    let screen = c.screen();
    assert!(
        screen.contains("match 2/4"),
        "like less, the search starts at the top line shown: {screen}"
    );
    c.keys(&["n"]).await;
    assert!(c.screen().contains("match 3/4"));
    c.keys(&["n", "n"]).await;
    assert!(c.screen().contains("match 1/4"), "n after the last wraps");
    c.keys(&["N"]).await;
    assert!(c.screen().contains("match 4/4"), "N goes back");
    c.keys(&["N"]).await;
    let screen = c.screen();
    assert!(screen.contains("match 3/4"), "{screen}");
    c.keys(&["home"]).await;
    let screen = c.screen();
    assert!(
        screen.contains("processing event 1 "),
        "lines above the match stay reachable: {screen}"
    );
    assert!(screen.contains("match 3/4"), "the search stays: {screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i5_the_jobs_filter_matches_the_state_column_and_reopening_replaces_it() {
    let mut c = console().await;
    c.keys(&[":", "c", " ", "2", "enter", "3"]).await;
    filter(&mut c, "failed").await;
    assert_eq!(c.app.snap.jobs_total, 2, "C2's two failed jobs");
    c.keys(&[":", "c", " ", "1", "enter", "3"]).await;
    filter(&mut c, "failed").await;
    assert_eq!(c.app.snap.jobs_total, 0, "C1 has no failed job");
    c.keys(&["/"]).await;
    assert!(
        c.app.input.as_ref().unwrap().selected,
        "the old filter is selected"
    );
    c.keys(&["s", "u", "c", "c"]).await;
    assert_eq!(
        c.app.input.as_ref().unwrap().text,
        "succ",
        "typing replaced `failed`"
    );
    c.keys(&["enter"]).await;
    assert_eq!(c.app.snap.jobs_total, 25);
}

/// Types `/text` and enter.
async fn filter(c: &mut Console, text: &str) {
    let keys = typed(text);
    let mut all = vec!["/"];
    all.extend(keys.iter().map(String::as_str));
    all.push("enter");
    c.keys(&all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i6_sorting_by_time_in_state_shows_the_shortest_first_and_returns_to_the_top() {
    let mut c = console().await;
    c.keys(&["3", "down", "down", "down"]).await;
    let mut presses = 0;
    while !c.screen().contains("by in state ↑") {
        c.keys(&["s"]).await;
        presses += 1;
        assert!(presses < 10, "no in-state sort");
    }
    let shown: Vec<i64> = c.app.snap.jobs.iter().map(|j| j.seconds_in_state).collect();
    let mut sorted = shown.clone();
    sorted.sort_unstable();
    assert_eq!(shown, sorted, "↑ means the shortest time in state first");
    let top = c.app.snap.jobs[0].id.clone();
    let screen = c.screen();
    let selected_line = screen
        .lines()
        .find(|l| l.contains(&format!(" {top} ")))
        .unwrap();
    assert!(
        selected_line.contains(&top),
        "the cursor is back on the first row"
    );
    c.keys(&["S"]).await;
    assert!(c.screen().contains("by in state ↓"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i7_help_scrolls_with_page_keys_stops_at_its_end_and_fits_80_columns() {
    let mut c = console().await;
    c.at(80, 24);
    c.keys(&["?", "pgdn"]).await;
    assert!(matches!(c.app.popup, Some(Popup::Help { scroll: 10 })));
    c.keys(&["pgup"]).await;
    assert!(
        matches!(c.app.popup, Some(Popup::Help { scroll: 0 })),
        "PageUp scrolls, not closes"
    );
    c.keys(&["end"]).await;
    let Some(Popup::Help { scroll: last }) = c.app.popup.clone() else {
        panic!("End closed help")
    };
    let screen = c.screen();
    assert!(
        screen.contains(":ACTION"),
        "the last line shows at End: {screen}"
    );
    c.keys(&["down", "pgdn"]).await;
    assert!(
        matches!(c.app.popup, Some(Popup::Help { scroll }) if scroll == last),
        "no scrolling past the end into an empty box"
    );
    for line in screen.lines() {
        assert!(!line.trim_end().ends_with("…"), "cut at 80 columns: {line}");
    }
    c.keys(&["q"]).await;
    assert!(
        c.app.popup.is_none() && !c.app.quit,
        "any other key closes help"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i8_esc_from_a_job_opened_in_triage_returns_to_triage_and_from_jobs_to_jobs() {
    let mut c = console().await;
    c.keys(&[":", "c", " ", "2", "enter", "4", "enter"]).await;
    assert_eq!(c.app.focus, Pane::JobDetail);
    assert!(
        c.screen().contains("triage › job"),
        "breadcrumbs: {}",
        c.screen()
    );
    c.keys(&["esc"]).await;
    assert_eq!(c.app.focus, Pane::Triage);
    c.keys(&["3", "enter", "esc"]).await;
    assert_eq!(c.app.focus, Pane::Jobs);
    c.keys(&["2", "enter"]).await;
    assert_eq!(
        c.app.focus,
        Pane::Jobs,
        "enter on a DAG node opens its jobs"
    );
    c.keys(&["enter", "esc", "esc"]).await;
    assert_eq!(c.app.focus, Pane::Jobs, "the jobs' narrowing goes first");
    c.keys(&["esc"]).await;
    assert_eq!(c.app.focus, Pane::Dag, "then back to the DAG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i9_dag_texts_read_right_and_connectors_share_their_node_column_at_every_width() {
    let mut c = console().await;
    c.keys(&[":", "c", " ", "2", "enter", "2"]).await;
    assert!(c.screen().contains("1 node in 1 layer"), "{}", c.screen());
    c.keys(&[":", "c", " ", "1", "enter", "2"]).await;
    for (w, h) in [(80, 24), (100, 30), (137, 40), (200, 60)] {
        let screen = c.at(w, h).screen();
        let lines: Vec<&str> = screen.lines().collect();
        let gen = lines.iter().position(|l| l.contains("● gen")).unwrap();
        let column = lines[gen].chars().position(|ch| ch == '●').unwrap();
        let sim = lines.iter().position(|l| l.contains("● sim")).unwrap();
        for l in &lines[gen + 1..sim] {
            assert_eq!(l.chars().nth(column), Some('│'), "at {w}: {l}");
        }
        assert_eq!(lines[sim].chars().position(|ch| ch == '●'), Some(column));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i10_keys_act_only_where_they_apply_and_d_on_a_job_removes_that_job() {
    let mut c = console().await;
    c.keys(&[":", "c", " ", "2", "enter", "3", "a"]).await;
    assert!(
        c.app.popup.is_none(),
        "`a` on a failed job's row asks nothing"
    );
    let flash = c.app.current_flash().unwrap().text.clone();
    assert!(flash.contains("not for what is selected"), "{flash}");
    c.keys(&["1", ":", "c", " ", "1", "enter", "x"]).await;
    assert!(
        c.app.popup.is_none(),
        "`x` on a succeeded campaign asks nothing"
    );
    assert!(
        !c.app.offers().iter().any(|o| o.action == Action::Reject),
        "and is not offered"
    );
    c.keys(&["3"]).await;
    let screen = c.screen();
    assert!(!screen.contains("abort C1"), "{screen}");
    let mut c = console_as("root", false, Theme::default_theme()).await;
    c.keys(&[":", "c", " ", "2", "enter", "3", "R"]).await;
    let Some(Popup::Confirm(confirm)) = &c.app.popup else {
        panic!("resubmit on a failed job asks first")
    };
    assert!(
        confirm.question.starts_with("resubmit J"),
        "{}",
        confirm.question
    );
    c.keys(&["esc", ":", "c", " ", "4", "enter", "3", "h"])
        .await;
    assert!(
        c.app.popup.is_none(),
        "a job not submitted yet cannot be held"
    );
    c.keys(&["D"]).await;
    let Some(Popup::Confirm(confirm)) = &c.app.popup else {
        panic!("D on a job row asks first")
    };
    let job = c.app.snap.jobs[0].id.clone();
    assert_eq!(confirm.question, format!("remove {job}?"));
    c.keys(&["enter"]).await;
    let done = c.run().await;
    assert_eq!(
        done,
        vec![Ok(format!(
            "{job} removed: the worker carries it out on its next pass"
        ))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i11_jobs_columns_drop_by_priority_at_80_and_show_step_cause_and_exit_at_200() {
    let mut c = console().await;
    c.keys(&[":", "c", " ", "1", "enter", "3"]).await;
    let narrow = c.at(80, 24).screen();
    assert!(
        narrow.contains("succeeded"),
        "a state is never cut: {narrow}"
    );
    assert!(
        !narrow.lines().skip(1).any(|l| l.contains("prodops")),
        "no batch id cut to `prodops`: {narrow}"
    );
    assert!(!narrow.contains("batch id"), "{narrow}");
    c.keys(&[":", "c", " ", "2", "enter", "3"]).await;
    let wide = c.at(200, 60).screen();
    for column in [
        "step",
        " gen ",
        "batch id",
        "exit",
        "cause",
        "exit code 3",
        "prodops-j",
    ] {
        assert!(wide.contains(column), "{column}: {wide}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i12_the_triage_confirmation_names_the_group_and_its_size() {
    let mut c = console_as("root", false, Theme::default_theme()).await;
    c.keys(&[":", "c", " ", "2", "enter", "4", "R"]).await;
    let screen = c.at(120, 40).screen();
    assert!(
        screen.contains("resubmit 2 failed jobs of `exit code 3` at local?"),
        "{screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i13_approvals_show_the_request_file_scrollably_and_changes_by_stage() {
    let mut c = console().await;
    c.at(80, 18);
    c.keys(&["5"]).await;
    let screen = c.screen();
    assert!(
        screen.contains("── stage gen"),
        "changes are named by stage: {screen}"
    );
    assert!(
        screen.contains("- title = \"Cosmic MC, FHC, 1000 events\"")
            && screen.contains("+ title = \"Cosmic MC, again\""),
        "title changes are shown: {screen}"
    );
    assert!(
        screen.contains("- events = 1000") && screen.contains("+ events = 500"),
        "{screen}"
    );
    assert!(screen.contains("more (pgdn)"), "a more marker: {screen}");
    c.keys(&["pgdn"]).await;
    let after = c.screen();
    assert_ne!(screen, after, "pgdn scrolls the request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i15_at_80_columns_the_header_keeps_the_worker_and_the_footer_keeps_help_and_quit() {
    let mut c = console().await;
    c.app.worker = prodops::tui::app::WorkerStatus::Watching {
        holder: "subm01:4242".into(),
    };
    c.app.snap.grants = (0..12).map(|i| format!("operator@exp{i}")).collect();
    for pane in ["1", "2", "3", "4", "5", "6"] {
        c.keys(&[pane]).await;
        let screen = c.at(80, 24).screen();
        let lines: Vec<&str> = screen.lines().collect();
        assert!(lines[0].contains("subm01:4242"), "{}", lines[0]);
        let footer = lines[23];
        assert!(
            footer.contains("? help") && footer.contains("q quit"),
            "{footer}"
        );
    }
    let wide = c.at(200, 60).screen();
    assert!(
        wide.contains("worker: watching (subm01:4242 holds the lease)"),
        "{wide}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_the_header_says_how_many_jobs_are_out_of_reach_even_at_80_columns() {
    let mut c = console().await;
    c.app.worker = prodops::tui::app::WorkerStatus::Leading {
        in_flight: 8,
        unreachable: 3,
    };
    c.app.snap.grants = (0..12).map(|i| format!("operator@exp{i}")).collect();
    let narrow = c.at(80, 24).screen();
    let header = narrow.lines().next().unwrap();
    assert!(header.contains("3 UNREACHABLE"), "{header}");
    let wide = c.at(200, 60).screen();
    assert!(
        wide.contains("worker: running, 8 in flight, 3 UNREACHABLE"),
        "{wide}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i16_dag_nodes_and_tree_lines_count_jobs_by_state() {
    let theme = Theme::default_theme();
    let counts = prodops::store::jobs::JobCounts {
        total: 10,
        succeeded: 0,
        failed: 2,
        active: 8,
        queued: 1,
        running: 3,
        held: 4,
        events: 0,
    };
    let text: String = prodops::tui::panes::campaigns::job_count_spans(&theme, &counts)
        .iter()
        .map(|s| s.content.to_string())
        .collect();
    assert_eq!(text, "10 jobs · 1 queued · 3 running · 4 held · 2 failed");
    let mut c = console().await;
    c.keys(&[":", "c", " ", "2", "enter", "2"]).await;
    assert!(c.screen().contains("2 jobs · 2 failed"), "{}", c.screen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i17_marks_and_ranges_make_one_confirmation_for_the_whole_set() {
    let mut c = console_as("root", false, Theme::default_theme()).await;
    c.keys(&[
        ":", "c", " ", "1", "enter", "3", "space", "S-down", "S-down",
    ])
    .await;
    assert!(c.screen().contains("3 marked"), "{}", c.screen());
    c.keys(&["R"]).await;
    let Some(Popup::Confirm(confirm)) = &c.app.popup else {
        panic!("no confirmation")
    };
    assert_eq!(confirm.question, "resubmit 3 marked jobs?");
    c.keys(&["esc", "esc"]).await;
    assert!(!c.screen().contains("· 3 marked"), "esc drops the marks");
    c.keys(&["*", "h"]).await;
    let Some(Popup::Confirm(confirm)) = &c.app.popup else {
        panic!("no confirmation")
    };
    assert_eq!(
        confirm.question, "hold 25 marked jobs?",
        "every job matching, not a page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i18_data_older_than_a_few_reloads_is_called_out_in_red() {
    let mut c = console().await;
    assert!(!c.screen().lines().next().unwrap().contains("old"));
    let failed = data::Snapshot {
        error: Some("connection refused at 127.0.0.1:5432".into()),
        ..data::Snapshot::default()
    };
    c.app.on_snapshot(failed);
    assert_eq!(
        c.app.snap.campaigns.len(),
        4,
        "a failed load keeps what is shown"
    );
    let flash = c.app.current_flash().unwrap().text.clone();
    assert!(flash.contains("connection refused"), "{flash}");
    c.app.loaded_at = Some(std::time::Instant::now() - Duration::from_secs(42));
    let buffer = c.at(80, 24).draw();
    let header: String = (0..80)
        .map(|x| buffer[(x, 0)].symbol().to_string())
        .collect();
    assert!(header.contains("data 42s old"), "{header}");
    let at = header.find("data 42s").unwrap();
    let col = header[..at].chars().count() as u16;
    assert_eq!(
        buffer[(col, 0)].fg,
        Theme::default_theme().style(Slot::FlashError).fg.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i19_history_unfolds_long_reasons_and_follows_the_selected_job() {
    let mut c = console().await;
    c.keys(&[":", "c", " ", "2", "enter", "3", "down", "6"])
        .await;
    let job = c.app.snap.jobs[1].id.clone();
    let screen = c.at(120, 40).screen();
    assert!(
        screen.contains(&format!("{job} · ")),
        "History shows {job}: {screen}"
    );
    c.keys(&["end"]).await;
    let folded = c.screen();
    c.at(90, 30);
    let before = c.screen();
    c.keys(&["enter"]).await;
    let after = c.screen();
    assert!(after.lines().count() == before.lines().count());
    assert_ne!(before, after, "enter unfolds the reason: {folded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i20_tab_cycles_completions_and_up_recalls_earlier_commands() {
    let mut c = console().await;
    c.keys(&[":", "j", "o", "b", "s", " ", "tab"]).await;
    assert_eq!(c.app.input.as_ref().unwrap().text, "jobs created");
    c.keys(&["tab"]).await;
    assert_eq!(c.app.input.as_ref().unwrap().text, "jobs submitting");
    c.keys(&["enter", ":", "up"]).await;
    assert_eq!(c.app.input.as_ref().unwrap().text, "jobs submitting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i21_a_campaign_chosen_at_start_is_selected_without_a_no_such_campaign_flash() {
    let t = template();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    std::fs::copy(&t.db, &db).unwrap();
    let store = Store::open(&db.display().to_string()).await.unwrap();
    let ops = Ops::new(store, Actor::named("ann"));
    let options = prodops::tui::Options {
        keymap: "default".into(),
        theme: "dark".into(),
        readonly: false,
        database: "c.db".into(),
        select: Some(CampaignId(2)),
    };
    let mut app = prodops::tui::new_app(&ops, &options);
    assert!(app.current_flash().is_none());
    let snap = data::load(&ops, None, &app.view()).await;
    app.on_snapshot(snap);
    assert!(app.current_flash().is_none(), "{:?}", app.flash);
    assert_eq!(app.scope().campaign, Some(CampaignId(2)));
    assert_eq!(
        app.focus,
        Pane::Dag,
        "a campaign chosen at start shows its DAG"
    );
    app.run_command("campaign 9");
    assert!(app
        .current_flash()
        .unwrap()
        .text
        .contains("C9: no such campaign"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i24_readme_console_screens_match_what_the_console_draws() {
    let mut c = console_as("root", false, Theme::default_theme()).await;
    c.app.worker = prodops::tui::app::WorkerStatus::Leading {
        in_flight: 0,
        unreachable: 0,
    };
    c.app.snap.checks.clear();
    c.keys(&["2"]).await;
    let wide = c.at(118, 28).screen();
    c.keys(&["1"]).await;
    let narrow = c.at(80, 24).screen();
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let updated = replace_screen(&replace_screen(&readme, "118x28", &wide), "80x24", &narrow);
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&readme_path, &updated).unwrap();
        return;
    }
    assert!(
        readme == updated,
        "README's console screens differ from what the console draws; run \
         `UPDATE_README=1 cargo test --test console i24` and review the diff"
    );
}

/// README with the screen between `<!-- screen WxH -->` and the next fence replaced.
fn replace_screen(readme: &str, size: &str, screen: &str) -> String {
    let marker = format!("<!-- screen {size} -->\n```text\n");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README has no `{marker}`"))
        + marker.len();
    let end = start + readme[start..].find("```").unwrap();
    let body: String = screen
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    format!("{}{body}{}", &readme[..start], &readme[end..])
}

// ── no key sequence panics ──────────────────────────────────────────────────

/// Every key either shipped keymap binds, as crossterm reports it.
fn keymap_keys() -> Vec<KeyEvent> {
    let mut keys = Vec::new();
    for (name, _) in SHIPPED {
        let (keymap, _) = Keymap::load(name, None);
        for action in Action::ALL {
            keys.extend(
                keymap
                    .keys_of(*action)
                    .iter()
                    .map(|k| event_of(&k.to_string())),
            );
        }
    }
    keys
}

/// The key event a keymap's key name stands for.
fn event_of(name: &str) -> KeyEvent {
    let mut mods = KeyModifiers::NONE;
    let mut rest = name;
    for (prefix, m) in [
        ("ctrl-", KeyModifiers::CONTROL),
        ("alt-", KeyModifiers::ALT),
        ("shift-", KeyModifiers::SHIFT),
    ] {
        if rest.len() > prefix.len() && rest.starts_with(prefix) {
            mods |= m;
            rest = &rest[prefix.len()..];
        }
    }
    let code = match rest {
        "pageup" => KeyCode::PageUp,
        "pagedown" => KeyCode::PageDown,
        "delete" => KeyCode::Delete,
        "backspace" => KeyCode::Backspace,
        f if f.len() > 1 && f.starts_with('f') => KeyCode::F(f[1..].parse().unwrap()),
        other => key(other).code,
    };
    KeyEvent::new(code, mods)
}

fn any_key() -> impl proptest::strategy::Strategy<Value = KeyEvent> {
    use proptest::prelude::*;
    let bound = keymap_keys();
    prop_oneof![
        3 => proptest::sample::select(bound),
        1 => proptest::char::range(' ', '~').prop_map(|c| KeyEvent::from(KeyCode::Char(c))),
        1 => proptest::sample::select(vec![
            KeyEvent::from(KeyCode::Enter),
            KeyEvent::from(KeyCode::Esc),
            KeyEvent::from(KeyCode::Tab),
            KeyEvent::from(KeyCode::Backspace),
            KeyEvent::new(KeyCode::Char('w'), KeyModifiers::CONTROL),
            KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL),
        ]),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 16,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    })]

    /// i1: hundreds of random keys (every key of both keymaps, printable
    /// characters, editing keys) on every pane, drawn at 80×24 and 200×60
    /// and reloaded as the console would, never panic.
    #[test]
    fn i1_random_keys_from_both_keymaps_never_panic_any_pane(
        start in 0usize..7,
        vim in proptest::bool::ANY,
        keys in proptest::collection::vec(any_key(), 300..400),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut c = console_as("root", false, Theme::default_theme()).await;
            if vim {
                c.app.keymap = Keymap::load("vim", None).0;
            }
            let opening: &[&[&str]] = &[&["1"], &["2"], &["3"], &["3", "enter"], &["4"], &["5"], &["6"]];
            c.keys(opening[start]).await;
            for (i, key) in keys.iter().enumerate() {
                c.app.on_key(*key);
                c.app.quit = false;
                let (w, h) = if i % 2 == 0 { (80, 24) } else { (200, 60) };
                c.at(w, h).draw();
                if i % 5 == 0 {
                    c.settle().await;
                }
            }
        });
    }
}
