//! The subtask DAG (J8): built from edges, cycles refused with the cycle named,
//! topological order, and incremental readiness for releasing successors (J1).

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;

/// Why a DAG could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    /// The edges form a cycle; the nodes are listed in order, first repeated last.
    #[error("dependency cycle: {}", .0.join(" → "))]
    Cycle(Vec<String>),
    /// An edge names a node that does not exist.
    #[error("`{node}` depends on unknown `{missing}`")]
    UnknownNode {
        /// The node whose dependency is unknown.
        node: String,
        /// The name that matched no node.
        missing: String,
    },
}

/// A directed acyclic graph of nodes identified by `K`; edges go parent → child.
#[derive(Debug, Clone)]
pub struct Dag<K> {
    nodes: Vec<K>,
    index: HashMap<K, usize>,
    parents: Vec<Vec<usize>>,
    children: Vec<Vec<usize>>,
}

impl<K: Clone + Eq + Hash + Display> Dag<K> {
    /// Builds the graph from nodes and `(parent, child)` edges; refuses cycles.
    pub fn new(nodes: Vec<K>, edges: &[(K, K)]) -> Result<Dag<K>, DagError> {
        let index: HashMap<K, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let mut parents = vec![Vec::new(); nodes.len()];
        let mut children = vec![Vec::new(); nodes.len()];
        for (parent, child) in edges {
            let unknown = |missing: &K| DagError::UnknownNode {
                node: child.to_string(),
                missing: missing.to_string(),
            };
            let p = *index.get(parent).ok_or_else(|| unknown(parent))?;
            let c = *index.get(child).ok_or_else(|| unknown(child))?;
            if !parents[c].contains(&p) {
                parents[c].push(p);
                children[p].push(c);
            }
        }
        let dag = Dag {
            nodes,
            index,
            parents,
            children,
        };
        dag.refuse_cycles()?;
        Ok(dag)
    }

    /// The nodes in the order they were given.
    pub fn nodes(&self) -> &[K] {
        &self.nodes
    }

    /// The direct parents of a node.
    pub fn parents_of(&self, node: &K) -> Vec<&K> {
        self.index
            .get(node)
            .map(|&i| self.parents[i].iter().map(|&p| &self.nodes[p]).collect())
            .unwrap_or_default()
    }

    /// Nodes in an order where every parent comes before its children;
    /// ties keep the input order, so the result is deterministic.
    pub fn topological_order(&self) -> Vec<&K> {
        let mut remaining: Vec<usize> = self.parents.iter().map(Vec::len).collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut frontier: std::collections::BTreeSet<usize> = (0..self.nodes.len())
            .filter(|&i| remaining[i] == 0)
            .collect();
        while let Some(i) = frontier.pop_first() {
            order.push(&self.nodes[i]);
            for &c in &self.children[i] {
                remaining[c] -= 1;
                if remaining[c] == 0 {
                    frontier.insert(c);
                }
            }
        }
        order
    }

    /// Depth of each node: 0 for roots, else 1 + the deepest parent (for layered drawing).
    pub fn layers(&self) -> Vec<usize> {
        let mut depth = vec![0usize; self.nodes.len()];
        for node in self.topological_order() {
            let i = self.index[node];
            depth[i] = self.parents[i]
                .iter()
                .map(|&p| depth[p] + 1)
                .max()
                .unwrap_or(0);
        }
        depth
    }

    /// Starts incremental readiness tracking with nothing done.
    pub fn readiness(&self) -> Readiness<'_, K> {
        Readiness {
            dag: self,
            missing_parents: self.parents.iter().map(Vec::len).collect(),
            done: vec![false; self.nodes.len()],
        }
    }

    fn refuse_cycles(&self) -> Result<(), DagError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Finished,
        }
        let mut mark = vec![Mark::New; self.nodes.len()];
        for start in 0..self.nodes.len() {
            if mark[start] != Mark::New {
                continue;
            }
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            mark[start] = Mark::OnPath;
            while let Some(&mut (node, ref mut next_child)) = path.last_mut() {
                if let Some(&child) = self.children[node].get(*next_child) {
                    *next_child += 1;
                    match mark[child] {
                        Mark::New => {
                            mark[child] = Mark::OnPath;
                            path.push((child, 0));
                        }
                        Mark::OnPath => return Err(self.cycle_error(&path, child)),
                        Mark::Finished => {}
                    }
                } else {
                    mark[node] = Mark::Finished;
                    path.pop();
                }
            }
        }
        Ok(())
    }

    fn cycle_error(&self, path: &[(usize, usize)], back_to: usize) -> DagError {
        let from = path.iter().position(|&(n, _)| n == back_to).unwrap_or(0);
        let mut names: Vec<String> = path[from..]
            .iter()
            .map(|&(n, _)| self.nodes[n].to_string())
            .collect();
        names.push(self.nodes[back_to].to_string());
        DagError::Cycle(names)
    }
}

/// Which nodes are ready as others complete, updated in O(children) per completion.
#[derive(Debug, Clone)]
pub struct Readiness<'a, K> {
    dag: &'a Dag<K>,
    missing_parents: Vec<usize>,
    done: Vec<bool>,
}

impl<'a, K: Clone + Eq + Hash + Display> Readiness<'a, K> {
    /// Nodes not done whose parents are all done.
    pub fn ready(&self) -> Vec<&'a K> {
        (0..self.dag.nodes.len())
            .filter(|&i| !self.done[i] && self.missing_parents[i] == 0)
            .map(|i| &self.dag.nodes[i])
            .collect()
    }

    /// Marks a node done and returns the children it made ready.
    pub fn complete(&mut self, node: &K) -> Vec<&'a K> {
        let Some(&i) = self.dag.index.get(node) else {
            return Vec::new();
        };
        if std::mem::replace(&mut self.done[i], true) {
            return Vec::new();
        }
        let mut released = Vec::new();
        for &c in &self.dag.children[i] {
            self.missing_parents[c] -= 1;
            if self.missing_parents[c] == 0 && !self.done[c] {
                released.push(&self.dag.nodes[c]);
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn e(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn j8_cycle_is_refused_and_named() {
        let err = Dag::new(
            s(&["gen", "sim", "reco"]),
            &[e("gen", "sim"), e("sim", "reco"), e("reco", "sim")],
        )
        .unwrap_err();
        assert_eq!(err, DagError::Cycle(s(&["sim", "reco", "sim"])));
        assert_eq!(err.to_string(), "dependency cycle: sim → reco → sim");
    }

    #[test]
    fn j8_self_dependency_is_a_cycle() {
        let err = Dag::new(s(&["a"]), &[e("a", "a")]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a → a");
    }

    #[test]
    fn unknown_parent_is_named() {
        let err = Dag::new(s(&["a"]), &[e("zz", "a")]).unwrap_err();
        assert_eq!(err.to_string(), "`a` depends on unknown `zz`");
    }

    #[test]
    fn topological_order_puts_parents_first_and_is_stable() {
        let dag = Dag::new(
            s(&["reco", "gen", "sim", "calib"]),
            &[e("gen", "sim"), e("sim", "reco"), e("calib", "reco")],
        )
        .unwrap();
        let order: Vec<&str> = dag
            .topological_order()
            .into_iter()
            .map(|x| x.as_str())
            .collect();
        assert_eq!(order, ["gen", "sim", "calib", "reco"]);
        assert_eq!(dag.layers(), vec![2, 0, 1, 0]);
    }

    #[test]
    fn j1_completion_releases_children_once_all_parents_are_done() {
        let dag = Dag::new(s(&["a", "b", "c"]), &[e("a", "c"), e("b", "c")]).unwrap();
        let mut r = dag.readiness();
        assert_eq!(r.ready(), vec!["a", "b"]);
        assert!(r.complete(&"a".to_string()).is_empty());
        assert_eq!(r.complete(&"b".to_string()), vec!["c"]);
        assert!(
            r.complete(&"b".to_string()).is_empty(),
            "completing twice releases nothing"
        );
        assert_eq!(r.ready(), vec!["c"]);
    }
}
