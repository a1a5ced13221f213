//! kres-kafka: delivers files from a Kafka topic to a Knot Resolver 6 host. The privileged host
//! (this crate) owns Kafka, the clock, logs and the resolver's management API; a sandboxed
//! WebAssembly guest (`guest/`) decides what each message does to the files directory.
//!
//! # Layout
//!
//! - `sandbox`: the only module that touches wasmtime: engine, limits, loading and calling the guest.
//! - `types`: what crosses the sandbox boundary, in the host's own types.
//! - `apply`: the `apply` command: one message from the command line through the guest.
//! - `cli`: command-line arguments.
//! - `logging`: the `tracing` subscriber.

pub mod apply;
pub mod cli;
pub mod logging;
pub mod sandbox;
pub mod types;
