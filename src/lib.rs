//! prodops: a production operations console for experiments' batch processing.
//!
//! `model` holds the rules, `store` the database, `ops` the actions shared by
//! the CLI, the console and batch mode, and `cli` the command line.

pub mod batch;
pub mod bench;
pub mod cli;
pub mod config;
pub mod jobrun;
pub mod model;
pub mod ops;
pub mod store;
pub mod tui;
pub mod worker;
