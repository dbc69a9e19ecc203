//! Store and ops acceptance tests of the request-to-campaign lifecycle, run on
//! SQLite and (with PRODOPS_TEST_PG) PostgreSQL. Test names cite requirement IDs.

mod common;

use common::{all_dbs, mc_request, rows, snapshot, world, TestDb};
use prodops::model::ids::{CampaignId, EntityKind, EntityRef};
use prodops::model::role::{Grant, Role};
use prodops::model::spec::TaskKind;
use prodops::model::state::*;
use prodops::ops::{Actor, Ops, OpsError};
use prodops::store::campaigns::CampaignFilter;
use prodops::store::states::{history_of, set_state};
use prodops::store::{Store, StoreError};
use sqlx::Row;
use std::path::{Path, PathBuf};

/// Writes a variant of the example MC request into `dir` with script paths made absolute.
fn mc_variant(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scripts");
    let text = std::fs::read_to_string(mc_request())
        .unwrap()
        .replace("\"scripts/", &format!("\"{}/", scripts.display()));
    let path = dir.join(name);
    std::fs::write(&path, edit(text)).unwrap();
    path
}

async fn file_mc(ops: &Ops) -> CampaignId {
    let detail = ops.request_new(&mc_request()).await.unwrap();
    detail.summary.id.parse().unwrap()
}

async fn state(store: &Store, id: CampaignId) -> String {
    sqlx::query("SELECT state FROM campaigns WHERE id = $1")
        .bind(id.0)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0)
}

/// Inserts one row of every kind so each state machine can be driven directly.
async fn one_of_each(store: &Store, campaign: CampaignId) -> [(EntityKind, i64); 4] {
    let mut tx = store.begin().await.unwrap();
    let task: i64 = sqlx::query("INSERT INTO tasks (campaign_id, name, kind, state, state_since, created_at) VALUES ($1, 't', 'mc', 'queued', 0, 0) RETURNING id")
        .bind(campaign.0).fetch_one(&mut *tx).await.unwrap().get(0);
    let sub: i64 = sqlx::query("INSERT INTO subtasks (task_id, name, state, state_since, spec_json, created_at) VALUES ($1, 's', 'waiting', 0, '{}', 0) RETURNING id")
        .bind(task).fetch_one(&mut *tx).await.unwrap().get(0);
    let batch: i64 = sqlx::query("INSERT INTO batches (subtask_id, seq, state, state_since, created_at) VALUES ($1, 0, 'pending', 0, 0) RETURNING id")
        .bind(sub).fetch_one(&mut *tx).await.unwrap().get(0);
    let job: i64 = sqlx::query("INSERT INTO jobs (batch_id, subtask_id, seq, state, state_since, created_at) VALUES ($1, $2, 0, 'created', 0, 0) RETURNING id")
        .bind(batch).bind(sub).fetch_one(&mut *tx).await.unwrap().get(0);
    tx.commit().await.unwrap();
    [
        (EntityKind::Task, task),
        (EntityKind::Subtask, sub),
        (EntityKind::Batch, batch),
        (EntityKind::Job, job),
    ]
}

/// Drives every (from, to) pair of a machine through `set_state` on one row.
async fn every_pair_through_the_store<S: Lifecycle>(db: &TestDb, store: &Store, id: i64) {
    let table = match S::KIND {
        EntityKind::Campaign => "campaigns",
        EntityKind::Task => "tasks",
        EntityKind::Subtask => "subtasks",
        EntityKind::Batch => "batches",
        EntityKind::Job => "jobs",
    };
    let entity = EntityRef { kind: S::KIND, id };
    for &from in S::ALL {
        for &to in S::ALL {
            sqlx::query(&format!("UPDATE {table} SET state = $1 WHERE id = $2"))
                .bind(from.as_str())
                .bind(id)
                .execute(store.pool())
                .await
                .unwrap();
            let before = history_of(store.pool(), entity).await.unwrap().len();
            let mut tx = store.begin().await.unwrap();
            let result = set_state(&mut tx, id, to, "test reason", "tester").await;
            let legal = check_transition(from, to).is_ok();
            match result {
                Ok(old) => {
                    assert!(legal, "{}: {from:?} → {to:?} was allowed", db.label);
                    assert_eq!(old, from);
                    tx.commit().await.unwrap();
                }
                Err(e) => {
                    assert!(!legal, "{}: legal {from:?} → {to:?} refused: {e}", db.label);
                    assert!(matches!(e, StoreError::Illegal(_)), "{e}");
                    drop(tx);
                }
            }
            let after = history_of(store.pool(), entity).await.unwrap();
            let now: String = sqlx::query(&format!("SELECT state FROM {table} WHERE id = $1"))
                .bind(id)
                .fetch_one(store.pool())
                .await
                .unwrap()
                .get(0);
            if legal {
                assert_eq!(
                    after.len(),
                    before + 1,
                    "{}: one history row per transition",
                    db.label
                );
                let last = after.last().unwrap();
                assert_eq!(
                    (
                        last.old.as_deref(),
                        last.new.as_str(),
                        last.reason.as_str(),
                        last.user.as_str()
                    ),
                    (Some(from.as_str()), to.as_str(), "test reason", "tester")
                );
                assert_eq!(now, to.as_str());
            } else {
                assert_eq!(
                    after.len(),
                    before,
                    "{}: refused {from:?} → {to:?} wrote history",
                    db.label
                );
                assert_eq!(
                    now,
                    from.as_str(),
                    "{}: refused transition changed the state",
                    db.label
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m7_m8_every_legal_transition_writes_one_history_row_and_every_illegal_one_nothing() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let c = file_mc(&w.ed).await;
        every_pair_through_the_store::<CampaignState>(&db, &w.store, c.0).await;
        let [(_, t), (_, s), (_, b), (_, j)] = one_of_each(&w.store, c).await;
        every_pair_through_the_store::<TaskState>(&db, &w.store, t).await;
        every_pair_through_the_store::<SubtaskState>(&db, &w.store, s).await;
        every_pair_through_the_store::<BatchState>(&db, &w.store, b).await;
        every_pair_through_the_store::<JobState>(&db, &w.store, j).await;
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m8_request_lifecycle_history_names_reason_and_user() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let c = file_mc(&w.ed).await;
        w.ann.approve(c, "physics approved").await.unwrap();
        let h = w.ed.history(c.entity()).await.unwrap();
        let steps: Vec<(Option<&str>, &str, &str, &str)> = h
            .iter()
            .map(|e| {
                (
                    e.old.as_deref(),
                    e.new.as_str(),
                    e.user.as_str(),
                    e.reason.as_str(),
                )
            })
            .collect();
        assert_eq!(
            steps,
            vec![
                (None, "new", "ed", "request filed"),
                (Some("new"), "pending_approval", "ed", "awaiting approval"),
                (
                    Some("pending_approval"),
                    "approved",
                    "ann",
                    "physics approved"
                ),
            ],
            "{}",
            db.label
        );
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j8_a_cyclic_request_is_refused_with_the_cycle_named_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let cyclic = mc_variant(dir.path(), "cyclic.toml", |t| {
        t.replace(
            "name           = \"gen\"",
            "name           = \"gen\"\nafter          = [\"reco\"]",
        )
    });
    for db in all_dbs().await {
        let w = world(&db).await;
        let before = snapshot(&w.store).await;
        let err = w.ed.request_new(&cyclic).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("stage.after: dependency cycle: gen → sim → reco → gen"),
            "{text}"
        );
        assert_eq!(snapshot(&w.store).await, before, "{}", db.label);
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j12_an_mc_request_cannot_run_unapproved_even_with_auto_approval() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let err = w
            .root
            .experiment_add("dune", &[TaskKind::Mc])
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("Monte-Carlo always needs an approver"),
            "{err}"
        );
        w.root
            .experiment_add("dune", &[TaskKind::Reco])
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dune_mc = mc_variant(dir.path(), "dune.toml", |t| {
            t.replace("\"nova\"", "\"dune\"")
        });
        let c: CampaignId = w
            .root
            .request_new(&dune_mc)
            .await
            .unwrap()
            .summary
            .id
            .parse()
            .unwrap();
        assert_eq!(state(&w.store, c).await, "pending_approval", "{}", db.label);
        let mut tx = w.store.begin().await.unwrap();
        let err = set_state(&mut tx, c.0, CampaignState::Running, "sneak", "root")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Illegal(_)), "{err}");
        drop(tx);
        assert_eq!(state(&w.store, c).await, "pending_approval");
        assert_eq!(
            rows(&w.store, "tasks").await,
            0,
            "no tasks exist before approval"
        );
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j12_reco_is_approved_by_experiment_policy_when_configured() {
    let keepup = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reco-keepup.toml");
    for db in all_dbs().await {
        let w = world(&db).await;
        let pending = w.ed.request_new(&keepup).await.unwrap();
        assert_eq!(
            pending.summary.state, "pending_approval",
            "nova has no auto-approval"
        );
        w.root
            .experiment_add("dune", &[TaskKind::Reco])
            .await
            .unwrap();
        w.root
            .user_add(
                "ed",
                &Grant {
                    role: Role::Experimenter,
                    experiment: "dune".into(),
                    kind: None,
                },
                None,
                None,
            )
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(&keepup)
            .unwrap()
            .replace("\"nova\"", "\"dune\"")
            .replace(
                "\"scripts/",
                &format!("\"{}/examples/scripts/", env!("CARGO_MANIFEST_DIR")),
            );
        let path = dir.path().join("dune-reco.toml");
        std::fs::write(&path, text).unwrap();
        let auto = w.ed.request_new(&path).await.unwrap();
        assert_eq!(auto.summary.state, "approved", "{}", db.label);
        assert_eq!(auto.approved_by.as_deref(), Some("policy"));
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j13_a_non_approver_cannot_approve_and_the_refusal_is_audited() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let c = file_mc(&w.ed).await;
        let audit_before = rows(&w.store, "audit").await;
        let before = snapshot(&w.store).await;
        for who in [&w.ed, &w.gus, &w.root] {
            let err = who.approve(c, "").await.unwrap_err();
            assert!(err.is_forbidden(), "{}: {err}", db.label);
            assert!(
                err.to_string()
                    .contains("needs the role approver in experiment nova"),
                "{err}"
            );
        }
        let mut after = snapshot(&w.store).await;
        let audit_after = rows(&w.store, "audit").await;
        assert_eq!(audit_after, audit_before + 3, "each refusal is audited");
        after.retain(|l| !l.starts_with("audit"));
        let mut before = before;
        before.retain(|l| !l.starts_with("audit"));
        assert_eq!(
            after, before,
            "{}: a refused approval writes nothing but its audit row",
            db.label
        );
        let refused: i64 = sqlx::query("SELECT COUNT(*) FROM audit WHERE action = 'approve' AND allowed = 0 AND user_name = 'ed'")
            .fetch_one(w.store.pool())
            .await
            .unwrap()
            .get(0);
        assert_eq!(refused, 1);
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w1_an_approver_registered_for_one_stage_approves_only_that_kind() {
    let keepup = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reco-keepup.toml");
    for db in all_dbs().await {
        let w = world(&db).await;
        let grant = Grant {
            role: Role::Approver,
            experiment: "nova".into(),
            kind: Some(TaskKind::Reco),
        };
        w.root.user_add("rita", &grant, None, None).await.unwrap();
        let rita = Ops::new(w.store.clone(), Actor::named("rita"));
        let mc = file_mc(&w.ed).await;
        let reco: CampaignId =
            w.ed.request_new(&keepup)
                .await
                .unwrap()
                .summary
                .id
                .parse()
                .unwrap();
        assert!(
            rita.approve(mc, "").await.unwrap_err().is_forbidden(),
            "{}",
            db.label
        );
        assert_eq!(
            rita.approve(reco, "").await.unwrap().summary.state,
            "approved"
        );
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x3_editing_an_approved_spec_returns_it_to_pending_approval() {
    let dir = tempfile::tempdir().unwrap();
    let same = mc_variant(dir.path(), "same.toml", |t| {
        t.replace("Cosmic MC, FHC", "Cosmic MC (retitled)")
    });
    let changed = mc_variant(dir.path(), "changed.toml", |t| {
        t.replace("seed_base      = 20261122", "seed_base      = 1")
    });
    for db in all_dbs().await {
        let w = world(&db).await;
        let c = file_mc(&w.ed).await;
        let approved = w.ann.approve(c, "").await.unwrap();
        assert_eq!(
            approved.approved_hash.as_deref(),
            Some(approved.spec_hash.as_str())
        );

        let retitled = w.ed.request_edit(c, &same).await.unwrap();
        assert_eq!(
            retitled.summary.state, "approved",
            "{}: a title edit keeps the approval",
            db.label
        );
        assert_eq!(retitled.summary.title, "Cosmic MC (retitled), 1000 events");

        let edited = w.ed.request_edit(c, &changed).await.unwrap();
        assert_eq!(edited.summary.state, "pending_approval", "{}", db.label);
        assert_eq!(edited.approved_hash, None);
        assert_ne!(edited.spec_hash, approved.spec_hash);
        let detail = w.ed.campaign(c).await.unwrap();
        assert!(
            detail.tasks.iter().all(|t| t.state == "cancelled"),
            "old tasks are superseded"
        );

        let again = w.ann.approve(c, "").await.unwrap();
        assert_eq!(
            again.approved_hash.as_deref(),
            Some(edited.spec_hash.as_str())
        );
        let detail = w.ed.campaign(c).await.unwrap();
        assert_eq!(
            detail.tasks.iter().filter(|t| t.state == "queued").count(),
            1
        );
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x3_a_running_campaign_cannot_be_edited() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let c = file_mc(&w.ed).await;
        w.ann.approve(c, "").await.unwrap();
        let mut tx = w.store.begin().await.unwrap();
        set_state(
            &mut tx,
            c.0,
            CampaignState::Running,
            "worker started it",
            "worker",
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let before = snapshot(&w.store).await;
        let err = w.ed.request_edit(c, &mc_request()).await.unwrap_err();
        assert!(err.to_string().contains("clone it to change it"), "{err}");
        assert_eq!(snapshot(&w.store).await, before, "{}", db.label);
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w6_cloning_copies_the_spec_but_not_the_history() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let c = file_mc(&w.ed).await;
        w.ann.approve(c, "").await.unwrap();
        let copy = w.ed.request_clone(c, Some("Second pass")).await.unwrap();
        let original = w.ed.request(c).await.unwrap();
        assert_eq!(copy.spec_hash, original.spec_hash);
        assert_eq!(copy.spec, original.spec);
        assert_eq!(copy.cloned_from.as_deref(), Some(c.to_string().as_str()));
        assert_eq!(copy.summary.title, "Second pass");
        assert_eq!(
            copy.summary.state, "pending_approval",
            "a clone is approved on its own"
        );
        let id: CampaignId = copy.summary.id.parse().unwrap();
        let h = w.ed.history(id.entity()).await.unwrap();
        assert_eq!(
            h.len(),
            2,
            "{}: only the clone's own creation rows",
            db.label
        );
        assert!(h.iter().all(|e| e.entity == id.to_string()));
        assert_eq!(h[0].reason, format!("cloned from {c}"));
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j13_two_concurrent_approvals_of_one_request_produce_one_approval() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let grant = Grant {
            role: Role::Approver,
            experiment: "nova".into(),
            kind: None,
        };
        w.root.user_add("amy", &grant, None, None).await.unwrap();
        let amy = Ops::new(w.store.clone(), Actor::named("amy"));
        for _ in 0..5 {
            let c = file_mc(&w.ed).await;
            let (a, b) = tokio::join!(
                w.ann.approve(c, "ann says yes"),
                amy.approve(c, "amy says yes")
            );
            let wins = [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count();
            assert_eq!(
                wins, 1,
                "{}: exactly one approval wins ({a:?} / {b:?})",
                db.label
            );
            let loser = a.err().or(b.err()).unwrap();
            assert!(
                matches!(
                    loser,
                    OpsError::Invalid(_) | OpsError::Store(StoreError::Conflict(_))
                ),
                "{loser}"
            );
            let approvals =
                w.ed.history(c.entity())
                    .await
                    .unwrap()
                    .iter()
                    .filter(|h| h.new == "approved")
                    .count();
            assert_eq!(approvals, 1);
            assert_eq!(
                w.ed.campaign(c).await.unwrap().tasks.len(),
                1,
                "tasks are created once"
            );
        }
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w2_consolidation_folds_pending_requests_into_one() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let (a, b, c) = (
            file_mc(&w.ed).await,
            file_mc(&w.ed).await,
            file_mc(&w.ed).await,
        );
        assert!(w
            .ed
            .consolidate(a, &[b], "")
            .await
            .unwrap_err()
            .is_forbidden());
        let err = w.ann.consolidate(a, &[a], "").await.unwrap_err();
        assert!(err.to_string().contains("into itself"), "{err}");
        w.ann.consolidate(a, &[b, c], "same sample").await.unwrap();
        for other in [b, c] {
            let r = w.ed.request(other).await.unwrap();
            assert_eq!(r.summary.state, "consolidated", "{}", db.label);
            assert_eq!(r.consolidated_into.as_deref(), Some(a.to_string().as_str()));
            let last = w.ed.history(other.entity()).await.unwrap().pop().unwrap();
            assert_eq!(last.reason, format!("consolidated into {a}: same sample"));
        }
        assert_eq!(
            w.ed.request(a).await.unwrap().summary.state,
            "pending_approval"
        );
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j14_w4_priority_is_changed_by_approvers_and_operators_only() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let low = file_mc(&w.ed).await;
        let high = file_mc(&w.ed).await;
        assert!(w
            .ed
            .set_priority(low, 900)
            .await
            .unwrap_err()
            .is_forbidden());
        let err = w.ann.set_priority(low, 5000).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("priority: must be between 0 and 1000"),
            "{err}"
        );
        w.ann.set_priority(high, 900).await.unwrap();
        w.root.set_priority(low, 10).await.unwrap();
        let queue =
            w.ed.requests(&CampaignFilter {
                states: vec!["pending_approval".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let order: Vec<&str> = queue.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            order,
            [high.to_string(), low.to_string()],
            "{}: J16 queue is by priority",
            db.label
        );
        let detail: String = sqlx::query("SELECT detail FROM audit WHERE action = 'set_priority' AND allowed = 1 ORDER BY id LIMIT 1")
            .fetch_one(w.store.pool())
            .await
            .unwrap()
            .get(0);
        assert_eq!(detail, "priority 50 → 900");
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_hold_release_and_cancel_before_anything_runs() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let c = file_mc(&w.ed).await;
        assert_eq!(
            w.ed.hold(c, "waiting for flux files")
                .await
                .unwrap()
                .summary
                .state,
            "held"
        );
        assert_eq!(
            w.ed.release(c, "").await.unwrap().summary.state,
            "pending_approval"
        );
        w.ann.approve(c, "").await.unwrap();
        w.root.hold(c, "grid downtime").await.unwrap();
        assert!(
            w.ed.campaign(c)
                .await
                .unwrap()
                .tasks
                .iter()
                .all(|t| t.state == "held"),
            "{}",
            db.label
        );
        let released = w.root.release(c, "downtime over").await.unwrap();
        assert_eq!(released.summary.state, "approved");
        assert!(w
            .ed
            .campaign(c)
            .await
            .unwrap()
            .tasks
            .iter()
            .all(|t| t.state == "queued"));
        assert!(w.gus.cancel(c, "").await.unwrap_err().is_forbidden());
        w.ed.cancel(c, "changed my mind").await.unwrap();
        let detail = w.ed.campaign(c).await.unwrap();
        assert_eq!(detail.request.state, "cancelled");
        assert!(detail.tasks.iter().all(|t| t.state == "cancelled"));
        assert!(detail.tasks[0]
            .subtasks
            .iter()
            .all(|s| s.state == "cancelled"));
        let before = snapshot(&w.store).await;
        let err = w.ed.cancel(c, "").await.unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot go from `cancelled` to `cancelled`"),
            "{err}"
        );
        assert_eq!(snapshot(&w.store).await, before);
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3_w5_pending_and_completed_requests_are_listed() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let a = file_mc(&w.ed).await;
        let b = file_mc(&w.ed).await;
        w.ann
            .reject(b, "duplicate of an older sample")
            .await
            .unwrap();
        let err = w.ann.reject(a, "  ").await.unwrap_err();
        assert!(err.to_string().starts_with("--reason"), "{err}");
        let pending =
            w.ed.requests(&CampaignFilter {
                states: vec!["pending_approval".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            pending.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            [a.to_string()],
            "{}",
            db.label
        );
        let done =
            w.ed.requests(&CampaignFilter {
                states: vec!["rejected".into(), "succeeded".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            done.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            [b.to_string()]
        );
        w.store.close().await;
    }
}

async fn hold_scope(store: &Store, id: CampaignId) -> Option<String> {
    sqlx::query("SELECT hold_scope FROM campaigns WHERE id = $1")
        .bind(id.0)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_a_hold_records_its_scope_a_second_hold_changes_it_and_release_clears_it() {
    use prodops::model::hold::HoldScope;
    for db in all_dbs().await {
        let w = world(&db).await;
        let c = file_mc(&w.ed).await;
        w.ann.approve(c, "").await.unwrap();
        w.root.hold(c, "grid downtime").await.unwrap();
        assert_eq!(
            hold_scope(&w.store, c).await.as_deref(),
            Some("queued"),
            "{}: the default hold lets running jobs end",
            db.label
        );
        let err = w.root.hold(c, "again").await.unwrap_err();
        assert!(err.to_string().contains("already held"), "{err}");
        let history = history_of(w.store.pool(), c.entity()).await.unwrap().len();
        w.root
            .hold_with_scope(c, HoldScope::Running, "the site must drain now")
            .await
            .unwrap();
        assert_eq!(hold_scope(&w.store, c).await.as_deref(), Some("running"));
        assert_eq!(
            history_of(w.store.pool(), c.entity()).await.unwrap().len(),
            history,
            "{}: the state did not change, only what the hold stops",
            db.label
        );
        let audited: String = sqlx::query(
            "SELECT detail FROM audit WHERE action = 'hold' AND allowed = 1 ORDER BY id DESC LIMIT 1",
        )
        .fetch_one(w.store.pool())
        .await
        .unwrap()
        .get(0);
        assert!(
            audited.starts_with("hold scope queued → running (submissions stop and queued and running jobs are held)"),
            "{audited}"
        );
        w.root.release(c, "").await.unwrap();
        assert_eq!(hold_scope(&w.store, c).await, None, "{}", db.label);
        assert_eq!(state(&w.store, c).await, "approved");
        w.store.close().await;
    }
}
