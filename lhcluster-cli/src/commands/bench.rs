//! `lhcluster bench`: the load generator lives in this crate's library
//! (`src/bench.rs`), which the benchmark lab (`bench/`) uses too.

pub use lhcluster_cli::bench::{Args, run};
