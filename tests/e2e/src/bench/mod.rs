//! `cargo xtask bench sync`: Ferry beside kcp's api-syncagent and a bare-client floor, one
//! engine at a time on the same kcp and target. See docs/benchmarks/sync.md. `cargo xtask bench
//! memory`: Ferry's memory at rest by object count (docs/benchmarks/memory.md). `cargo xtask
//! bench replicas`: convergence with 1, 2 and 3 replicas sharing the work
//! (docs/benchmarks/replicas.md).

pub mod cold;
pub mod engine;
pub mod leftovers;
pub mod memory;
pub mod plot;
pub mod procstat;
pub mod raw;
pub mod replicas;
pub mod report;
pub mod run;
pub mod stats;
pub mod tracker;
