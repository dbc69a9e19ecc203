//! The pure domain: ids, state machines, the DAG, specs, roles. No I/O here.

pub mod check;
pub mod criteria;
pub mod dag;
pub mod hold;
pub mod ids;
pub mod jobspec;
pub mod progress;
pub mod request;
pub mod request_file;
pub mod request_policy;
pub mod role;
pub mod spec;
pub mod split;
pub mod state;
