//! kres-kafka: delivers files from a Kafka topic to a Knot Resolver 6 host. The privileged host
//! (this crate) owns Kafka, the clock, logs and the resolver's management API; a sandboxed
//! WebAssembly guest (`guest/`) decides what each message does to the files directory.
//!
//! # Layout
//!
//! Dependencies point down this list, never up.
//!
//! Leaf data and parsing:
//! - `outcome`: what crosses the sandbox boundary, and the one vocabulary for what happened to
//!   a message (logs, metrics, `apply`'s JSON and manager requests derive from it).
//! - `system`: the machine's clock and hostname.
//! - `config`: the resolver's config files, merged and turned into checked settings.
//!
//! Services:
//! - `sandbox`: the only module that touches wasmtime: engine, limits, loading and calling the guest.
//! - `kafka`: rdkafka's client options, the consumer (partitions assigned by hand, positions
//!   from the journal, commits), Kafka's default partitioner, librdkafka's logs.
//! - `tls`: start-up checks of the TLS files.
//! - `manager`: calls to the resolver's management API (reload, renew, its running
//!   configuration and schema), retried with backoff.
//! - `ruledb`: the resolver's rule database, read from outside: did its policy-loader commit.
//! - `resolver`: what the guest may ask about the resolver: its schema, its own validator.
//! - `scheduler`: debounces and coalesces manager calls, never drops one; the owed-call marker.
//! - `health`: what `/health` (the loop turns) and `/ready` (delivering now) answer.
//! - `metrics`: counters and gauges for operators, served as Prometheus text on `GET /metrics`
//!   beside `/health` and `/ready`.
//! - `swap`: hot swap: watches the guest file, loads and checks new guests off-thread.
//! - `publish`: the publisher (producer, chunking, progress; the state topic it keeps).
//! - `status`: the status topic: the daemon's reports (never blocking delivery), and reading
//!   them back for `send --wait` and `status`.
//!
//! Wiring:
//! - `daemon`: `run`: consumer to guest to scheduler, offsets stored after durable ends; every
//!   task tracked, shutdown and signals taken from the caller.
//! - `demo`: the embedded demo (in-process broker, `demo::standin` manager, publisher, daemon).
//!
//! Edges:
//! - `commands`: one module per command, the only place clap types appear.
//! - `logging`: the `tracing` subscriber.

pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod health;
pub mod kafka;
pub mod logging;
pub mod manager;
pub mod metrics;
pub mod outcome;
pub mod publish;
pub mod resolver;
pub mod ruledb;
pub mod sandbox;
pub mod scheduler;
pub mod status;
pub mod swap;
pub mod system;
pub mod tls;
pub mod watch;
