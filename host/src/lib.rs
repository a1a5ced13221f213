//! kres-kafka: delivers files from a Kafka topic to a Knot Resolver 6 host. The privileged host
//! (this crate) owns Kafka, the clock, logs and the resolver's management API; a sandboxed
//! WebAssembly guest (`guest/`) decides what each message does to the files directory.
//!
//! # Layout
//!
//! - `sandbox`: the only module that touches wasmtime: engine, limits, loading and calling the guest.
//! - `types`: what crosses the sandbox boundary, in the host's own types.
//! - `config`: the resolver's config files: `hostname`, `management`, `kafka`, merged and checked.
//! - `kafka`: the only module that configures rdkafka: client options, consumer, offsets, logs.
//! - `tls`: start-up checks of the TLS files; the librdkafka options that may not weaken TLS.
//! - `manager`: calls to the resolver's management API (reload, renew).
//! - `metrics`: counters for operators, served as Prometheus text on `GET /metrics`.
//! - `scheduler`: debounces and coalesces manager calls; never drops a request.
//! - `swap`: hot swap: watches the guest file and SIGHUP, loads and checks new guests off-thread.
//! - `daemon`: `run`: consumer to guest to scheduler, offsets stored after durable ends.
//! - `send`: the publisher.
//! - `demo`: the embedded demo: in-process broker, stand-in manager, publisher and daemon.
//! - `standin`: a stand-in manager on a unix socket, for the demo and the tests.
//! - `bench`: `kres-kafka bench`: measured figures (guest swap), printed.
//! - `apply`: the `apply` command: one message from the command line through the guest.
//! - `commands`: the asynchronous commands' edges: runtime, signals, exit status.
//! - `cli`: command-line arguments.
//! - `logging`: the `tracing` subscriber.

pub mod apply;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod kafka;
pub mod logging;
pub mod manager;
pub mod metrics;
pub mod sandbox;
pub mod scheduler;
pub mod send;
pub mod standin;
pub mod swap;
pub mod tls;
pub mod types;
