//! The one state-change path for many entities (M7, M8): every move checked
//! against the model's table and recorded with its reason, all or nothing,
//! on SQLite and PostgreSQL.

mod common;

use common::{all_dbs, file_and_approve, mc_request, world};
use prodops::model::ids::{EntityKind, EntityRef};
use prodops::model::state::SubtaskState;
use prodops::store::states::{history_of, set_states, states_of};
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
