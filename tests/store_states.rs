//! The one state-change path for many entities (M7, M8): every move checked
//! against the model's table and recorded with its reason, all or nothing
//! for a person's action, and for the worker each entity that cannot move
//! skipped and named while the others move, on SQLite and PostgreSQL.

mod common;

use common::{all_dbs, file_and_approve, mc_request, world};
use prodops::model::ids::{EntityKind, EntityRef};
use prodops::model::state::{CampaignState, SubtaskState};
use prodops::store::states::{
    history_of, move_states, set_states, states_of, Moves, SkippedMove, WhySkipped,
};
use prodops::store::StoreError;

/// The subtasks of the example campaign: `(id, state)` in id order.
async fn subtasks(store: &prodops::store::Store) -> Vec<(i64, SubtaskState)> {
    let mut tx = store.begin().await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM subtasks ORDER BY id")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    states_of::<SubtaskState>(&mut tx, &ids).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m8_many_entities_move_together_each_with_its_history_row_and_reason() {
    for db in all_dbs().await {
        let w = world(&db).await;
        file_and_approve(&w, &mc_request()).await;
        let before = subtasks(&w.store).await;
        let waiting: Vec<(i64, String)> = before
            .iter()
            .filter(|(_, s)| *s == SubtaskState::Waiting)
            .map(|(id, _)| (*id, format!("parents of S{id} done")))
            .collect();
        assert_eq!(waiting.len(), 2, "{}: sim and reco wait", db.label);
        let mut tx = w.store.begin().await.unwrap();
        set_states(&mut tx, &waiting, SubtaskState::Ready, "tester")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        for (id, why) in &waiting {
            let entity = EntityRef {
                kind: EntityKind::Subtask,
                id: *id,
            };
            let last = history_of(w.store.pool(), entity)
                .await
                .unwrap()
                .pop()
                .unwrap();
            assert_eq!(
                (
                    last.old.as_deref(),
                    last.new.as_str(),
                    last.reason.as_str(),
                    last.user.as_str()
                ),
                (Some("waiting"), "ready", why.as_str(), "tester"),
                "{}",
                db.label
            );
        }
        let after = subtasks(&w.store).await;
        assert!(
            after.iter().all(|(_, s)| *s == SubtaskState::Ready),
            "{after:?}"
        );
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m7_a_refused_move_names_the_entity_state_and_writes_nothing() {
    for db in all_dbs().await {
        let w = world(&db).await;
        file_and_approve(&w, &mc_request()).await;
        let before = common::snapshot(&w.store).await;
        let all: Vec<(i64, String)> = subtasks(&w.store)
            .await
            .iter()
            .map(|(id, _)| (*id, "go".to_string()))
            .collect();
        let mut tx = w.store.begin().await.unwrap();
        let refused = set_states(&mut tx, &all, SubtaskState::Ready, "tester").await;
        drop(tx);
        match refused {
            Err(StoreError::Illegal(e)) => {
                assert_eq!((e.from, e.to), ("ready", "ready"), "{}: {e}", db.label)
            }
            other => panic!("{}: {other:?}", db.label),
        }
        assert_eq!(common::snapshot(&w.store).await, before, "{}", db.label);

        let mut tx = w.store.begin().await.unwrap();
        let unknown = set_states(&mut tx, &[(9999, "x".into())], SubtaskState::Ready, "t").await;
        drop(tx);
        assert!(
            matches!(&unknown, Err(StoreError::NotFound(what)) if what == "S9999"),
            "{}: {unknown:?}",
            db.label
        );
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m7_an_entity_that_cannot_move_is_skipped_and_named_while_the_others_move() {
    for db in all_dbs().await {
        let w = world(&db).await;
        file_and_approve(&w, &mc_request()).await;
        let before = subtasks(&w.store).await;
        let mut all: Vec<(i64, String)> = before
            .iter()
            .map(|(id, _)| (*id, format!("go S{id}")))
            .collect();
        all.push((9999, "go".into()));
        let mut tx = w.store.begin().await.unwrap();
        let skipped = move_states(&mut tx, &all, SubtaskState::Ready, "worker")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let ready = before[0].0;
        assert_eq!(
            before[0].1,
            SubtaskState::Ready,
            "{}: gen is ready",
            db.label
        );
        let names: Vec<(String, &WhySkipped)> = skipped
            .moves()
            .iter()
            .map(|m: &SkippedMove| (m.entity.to_string(), &m.why))
            .collect();
        assert!(
            matches!(names.as_slice(),
                [(a, WhySkipped::Illegal(e)), (b, WhySkipped::Missing)]
                    if *a == format!("S{ready}") && e.from == "ready" && b == "S9999"),
            "{}: {names:?}",
            db.label
        );
        let warnings = skipped.warnings();
        assert!(
            warnings[0].starts_with(&format!("S{ready} skipped (not moved to `ready`): a subtask cannot go from `ready` to `ready`")),
            "{warnings:?}"
        );
        assert!(
            subtasks(&w.store)
                .await
                .iter()
                .all(|(_, s)| *s == SubtaskState::Ready),
            "{}: the waiting subtasks moved",
            db.label
        );
        for (id, _) in &before[1..] {
            let entity = EntityRef {
                kind: EntityKind::Subtask,
                id: *id,
            };
            let last = history_of(w.store.pool(), entity)
                .await
                .unwrap()
                .pop()
                .unwrap();
            assert_eq!(
                (last.old.as_deref(), last.reason),
                (Some("waiting"), format!("go S{id}"))
            );
        }
        let gen = EntityRef {
            kind: EntityKind::Subtask,
            id: ready,
        };
        let gen_history = history_of(w.store.pool(), gen).await.unwrap();
        assert_eq!(
            gen_history.last().map(|h| h.new.as_str()),
            Some("ready"),
            "{}",
            db.label
        );
        assert!(
            gen_history.iter().all(|h| h.user != "worker"),
            "{}: nothing recorded for the skipped one: {gen_history:?}",
            db.label
        );
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m7_a_move_expecting_a_state_skips_an_entity_that_left_it_even_to_a_state_that_could_move()
{
    for db in all_dbs().await {
        let w = world(&db).await;
        let c = file_and_approve(&w, &mc_request()).await;
        w.root.hold(c, "downtime").await.unwrap();
        let before = common::snapshot(&w.store).await;
        let mut start = Moves::expecting(&[CampaignState::Approved]);
        start.add(c.0, CampaignState::Running, "the worker started it");
        let mut tx = w.store.begin().await.unwrap();
        let skipped = start.write(&mut tx, "worker").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            skipped.warnings(),
            [format!(
                "{c} skipped (not moved to `running`): it changed while this was being done"
            )],
            "{}: held may go to running, but the worker read it approved",
            db.label
        );
        assert_eq!(common::snapshot(&w.store).await, before, "{}", db.label);
        w.store.close().await;
    }
}
