//! prodops: a production operations console for experiments' batch processing.
//!
//! `model` holds the rules, `store` the database, `ops` the actions shared by
//! the CLI, the console and batch mode, and `cli` the command line. `clock`
//! and `failpoint` are used by every layer (docs/architecture.md).

pub mod batch;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod failpoint;
pub mod host;
pub mod jobrun;
pub mod model;
pub mod ops;
pub mod store;
pub mod tui;
pub mod worker;
