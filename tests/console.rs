//! The console (issue 4): every pane rendered on ratatui's `TestBackend` at
//! 80×24 and 200×60 from a seeded database, in the dark theme and with
//! NO_COLOR; the keymaps reach every action and help lists them; keys drive
//! real actions through `ops`.

mod common;

use common::{file_and_approve, local_worker, mc_request, sqlite, world, World};
use prodops::model::ids::CampaignId;
use prodops::tui::action::Action;
use prodops::tui::app::{App, Effect, Pane};
use prodops::tui::data;
use prodops::tui::keymap::{Keymap, SHIPPED};
use prodops::tui::theme::Theme;
use prodops::worker::{Throttles, Worker};
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use ratatui::Terminal;
use std::path::Path;
use std::time::Duration;

/// A request whose only stage fails every job with exit 3.
fn failing_request(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("fail.sh");
    std::fs::write(&script, "#!/bin/sh\necho 'bad geometry file' >&2\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let request = dir.join("failing.toml");
    std::fs::write(
        &request,
        "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"Broken geometry\"\n[defaults]\nrelease = \"v1\"\nmax_attempts = 1\nresources = { memory_mb = 100, wall_hours = 1 }\n[[stage]]\nname = \"gen\"\nscript = \"fail.sh\"\nevents = 20\nevents_per_job = 10\nseed_base = 7\n",
    )
    .unwrap();
    request
}

/// C1 succeeded (the example campaign, run for real), C2 failed (2 jobs,
/// exit 3), C3 pending approval: a clone of C1 with fewer events.
struct Seeded {
    world: World,
    worker: Worker,
    _db: common::TestDb,
    _dir: tempfile::TempDir,
}

async fn seeded() -> Seeded {
    let db = sqlite();
    let w = world(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = local_worker(&w.store, dir.path(), 2, Throttles::default()).await;
    for path in [mc_request(), failing_request(dir.path())] {
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
    let edited = dir.path().join("edited.toml");
    let text = std::fs::read_to_string(mc_request())
        .unwrap()
        .replace("events         = 1000", "events         = 500")
        .replace("events_at_least = 1000", "events_at_least = 500")
        .replace(
            "\"scripts/",
            &format!("\"{}/examples/scripts/", env!("CARGO_MANIFEST_DIR")),
        );
    std::fs::write(&edited, text).unwrap();
    let id: CampaignId = clone.summary.id.parse().unwrap();
    w.ed.request_edit(id, &edited).await.unwrap();
    Seeded {
        world: w,
        worker,
        _db: db,
        _dir: dir,
    }
}

fn app(theme: Theme, readonly: bool) -> App {
    App::new(Keymap::default_map(), theme, "ann", "test.db", readonly)
}

/// Loads what the app's view asks for until selections settle (as the loader does).
async fn settle(app: &mut App, s: &Seeded) {
    for _ in 0..4 {
        let snap = data::load(&s.world.ann, Some(&s.worker), &app.view()).await;
        assert!(snap.error.is_none(), "{:?}", snap.error);
        app.on_snapshot(snap);
    }
}

fn render(app: &mut App, width: u16, height: u16) -> (String, ratatui::buffer::Buffer) {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|f| prodops::tui::panes::draw(f, app))
        .unwrap();
    let buffer = terminal.backend().buffer().clone();
    let text = (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n");
    (text, buffer)
}

fn uses_colour(buffer: &ratatui::buffer::Buffer) -> bool {
    buffer
        .content()
        .iter()
        .any(|c| c.fg != Color::Reset || c.bg != Color::Reset)
}

/// Shows `pane` with its usual selection and returns the screen at both sizes.
async fn screens(s: &Seeded, theme: &Theme, pane: Pane) -> Vec<(String, ratatui::buffer::Buffer)> {
    let mut a = app(theme.clone(), false);
    settle(&mut a, s).await;
    match pane {
        Pane::Campaigns => {
            a.run_command("campaign 1");
            settle(&mut a, s).await;
            for action in [Action::Right, Action::Down, Action::Right] {
                a.apply(action);
                render(&mut a, 200, 60);
            }
        }
        Pane::Dag => {
            a.run_command("campaign 1");
            a.apply(Action::ShowDag);
        }
        Pane::Jobs => {
            a.run_command("campaign 2");
            a.apply(Action::ShowJobs);
        }
        Pane::JobDetail => {
            a.run_command("campaign 2");
            a.apply(Action::ShowJobs);
            settle(&mut a, s).await;
            a.apply(Action::Open);
        }
        Pane::Triage => {
            a.run_command("campaign 2");
            a.apply(Action::ShowTriage);
        }
        Pane::Approvals => {
            a.apply(Action::ShowApprovals);
        }
        Pane::History => {
            a.run_command("campaign 1");
            a.apply(Action::ShowHistory);
        }
    }
    settle(&mut a, s).await;
    vec![render(&mut a, 80, 24), render(&mut a, 200, 60)]
}

fn assert_shows(screen: &str, what: &[&str], pane: Pane, size: &str) {
    for w in what {
        assert!(
            screen.contains(w),
            "{pane:?} at {size} should show `{w}`:\n{screen}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pane_renders_states_counts_and_key_hints_at_both_sizes_in_dark_and_no_color() {
    let s = seeded().await;
    let dark = Theme::default_theme();
    let mono = Theme::default_theme().without_colour();
    let expect: &[(Pane, &[&str], &[&str])] = &[
        // (pane, shown at both sizes, shown at 200×60 only)
        (
            Pane::Campaigns,
            &["Campaigns", "nova", "C1", "succeeded", "enter open"],
            &[
                "C2",
                "failed",
                "1 failed",
                "T1",
                "S1",
                "gen",
                "10/10 jobs ok",
                "3/3 ok",
            ],
        ),
        (
            Pane::Dag,
            &["DAG", "gen", "succeeded"],
            &["sim", "reco", "◀ gen", "10/10 jobs", "3 layers"],
        ),
        (
            Pane::Jobs,
            &["Jobs", "J", "failed", "of 2"],
            &["batch id", "in state", "prodops-j", "enter open"],
        ),
        (
            Pane::JobDetail,
            &["Job", "failed", "exit code 3"],
            &["stage-in", "run", "bad geometry file", "f follow log"],
        ),
        (
            Pane::Triage,
            &["Triage", "exit code 3"],
            &["2 failed jobs in 1 groups", "local", "R resubmit failed"],
        ),
        (
            Pane::Approvals,
            &["Approvals", "1 pending", "C3"],
            &[
                "changes against C1",
                "\"events\": 1000,",
                "\"events\": 500,",
                "-  ",
                "+  ",
                "a approve",
            ],
        ),
        (
            Pane::History,
            &["History", "C1"],
            &[
                "pending_approval",
                "approved",
                "every task succeeded",
                "worker",
            ],
        ),
    ];
    for (pane, both, large) in expect {
        for (theme, name) in [(&dark, "dark"), (&mono, "NO_COLOR")] {
            let shots = screens(&s, theme, *pane).await;
            for ((text, buffer), size) in shots.iter().zip(["80×24", "200×60"]) {
                assert_shows(text, both, *pane, &format!("{size} {name}"));
                if size == "200×60" {
                    assert_shows(text, large, *pane, &format!("{size} {name}"));
                }
                assert_eq!(
                    uses_colour(buffer),
                    name == "dark",
                    "{pane:?} {size} {name}: colour use"
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
        let mut a = App::new(keymap.clone(), Theme::default_theme(), "ann", "x", false);
        a.apply(Action::Help);
        let (help, _) = render(&mut a, 120, 60);
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
    let s = seeded().await;
    let mut a = app(Theme::default_theme(), false);
    settle(&mut a, &s).await;
    a.apply(Action::ShowApprovals);
    settle(&mut a, &s).await;
    assert!(a.apply(Action::Approve).is_empty(), "approve asks first");
    let (screen, _) = render(&mut a, 120, 40);
    assert!(screen.contains("approve C3?"), "{screen}");
    let enter = crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Enter);
    let effects = a.on_key(enter);
    let [Effect::Run(command)] = effects.as_slice() else {
        panic!("{effects:?}")
    };
    let done = data::execute(&s.world.ann, command.clone()).await;
    assert_eq!(done, Ok("C3 approved".to_string()));
    // The same key for someone without the approver role is refused by ops.
    let refused = data::execute(&s.world.gus, command.clone())
        .await
        .unwrap_err();
    assert!(refused.contains("forbidden"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_hides_and_refuses_every_state_change() {
    let s = seeded().await;
    let mut a = app(Theme::default_theme(), true);
    settle(&mut a, &s).await;
    a.apply(Action::ShowApprovals);
    for action in Action::ALL.iter().filter(|a| a.mutates()) {
        assert!(a.apply(*action).is_empty(), "{}", action.name());
        assert!(
            a.popup.is_none(),
            "{} asked for confirmation",
            action.name()
        );
    }
    let (screen, _) = render(&mut a, 200, 60);
    assert!(!screen.contains("a approve"), "{screen}");
    a.apply(Action::Help);
    let (help, _) = render(&mut a, 200, 60);
    assert!(!help.contains(":approve"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_a_triage_group_reruns_only_its_jobs() {
    let s = seeded().await;
    let mut a = app(Theme::default_theme(), false);
    settle(&mut a, &s).await;
    a.run_command("campaign 2");
    a.apply(Action::ShowTriage);
    settle(&mut a, &s).await;
    assert_eq!(a.snap.failures.len(), 1);
    a.apply(Action::Resubmit);
    let effects = a.on_key(crossterm::event::KeyEvent::from(
        crossterm::event::KeyCode::Enter,
    ));
    let [Effect::Run(command)] = effects.as_slice() else {
        panic!("{effects:?}")
    };
    let done = data::execute(&s.world.root, command.clone()).await.unwrap();
    assert_eq!(done, "2 of 2 jobs resubmitted");
    let c1_jobs_before = common::rows(&s.world.store, "jobs").await;
    assert_eq!(
        c1_jobs_before,
        25 + 2 + 2,
        "C1's 25 jobs, C2's 2 failed and their 2 new attempts"
    );
}
