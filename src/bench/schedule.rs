//! `dag-schedule`: which subtasks are ready, recomputed after each
//! completion of a 10,000-node random DAG (up to 3 parents per node among
//! the 100 before it), incrementally ([`crate::model::dag::Readiness`]):
//! the total time to complete every node, and the time to build the graph.
//! `--quick`: 1,000 nodes.

use super::{Figure, Options, Round, Target};
use crate::model::dag::Dag;
use anyhow::ensure;
use std::collections::HashMap;
use std::time::Instant;

/// One round: build, then complete every node as it becomes ready.
pub(super) fn round(options: &Options) -> anyhow::Result<Round> {
    let n = if options.quick { 1_000 } else { 10_000 };
    let (nodes, edges) = random_dag(n, 0x5eed_2026);
    let started = Instant::now();
    let dag = Dag::new(nodes, &edges)?;
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;

    let started = Instant::now();
    let mut readiness = dag.readiness();
    let mut ready = readiness.ready();
    let mut order = Vec::with_capacity(n);
    while let Some(node) = ready.pop() {
        ready.extend(readiness.complete(node));
        order.push(node);
    }
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;

    check_order(&order, &edges, n)?;
    Ok(Round {
        figures: vec![
            Figure::new(
                &format!("ready set after each of {n} completions, total"),
                total_ms,
                "ms",
            )
            .target(Target::AtMost(50.0)),
            Figure::new(&format!("building the {n}-node graph"), build_ms, "ms"),
        ],
        notes: Vec::new(),
    })
}

/// Fails unless every node completed once, after all its parents.
fn check_order(order: &[&String], edges: &[(String, String)], n: usize) -> anyhow::Result<()> {
    ensure!(order.len() == n, "{} of {n} nodes completed", order.len());
    let at: HashMap<&String, usize> = order.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    ensure!(at.len() == n, "a node completed twice");
    let early = edges.iter().filter(|(p, c)| at[p] > at[c]).count();
    ensure!(early == 0, "{early} nodes completed before a parent");
    Ok(())
}

/// `n` nodes `n0`… and edges from up to 3 of the 100 nodes before each,
/// drawn from a fixed seed (the same graph every run).
fn random_dag(n: usize, seed: u64) -> (Vec<String>, Vec<(String, String)>) {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let nodes: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    let mut edges = Vec::new();
    for child in 1..n {
        let window = child.min(100);
        let mut parents: Vec<usize> = (0..next() % 4)
            .map(|_| child - 1 - (next() as usize % window))
            .collect();
        parents.sort_unstable();
        parents.dedup();
        edges.extend(
            parents
                .into_iter()
                .map(|p| (nodes[p].clone(), nodes[child].clone())),
        );
    }
    (nodes, edges)
}
