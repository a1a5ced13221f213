//! Time the RPZ judge natively on a file, as the host runs it while a chunked file is written:
//! `cargo run --release -p kres-kafka-guest --example judge -- FILE [ROUNDS] [PIECE]`. Prints
//! the best and median MB/s of the rounds; under `perf record` it shows where the time goes.

use kres_kafka_guest::zone::RpzJudge;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: judge FILE [ROUNDS] [PIECE]");
    let rounds: usize = args.next().map_or(5, |s| s.parse().expect("ROUNDS"));
    let piece: usize = args.next().map_or(512 << 10, |s| s.parse().expect("PIECE"));
    let bytes = std::fs::read(&path).expect("FILE");
    let mut speeds = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let mut judge = RpzJudge::new();
        for part in bytes.chunks(piece) {
            judge.feed(part).expect("a valid block list");
        }
        let summary = judge.finish().expect("a valid block list");
        let secs = started.elapsed().as_secs_f64();
        speeds.push(bytes.len() as f64 / 1e6 / secs);
        if speeds.len() == 1 {
            println!("{} records, {} skipped", summary.records, summary.skipped);
        }
    }
    speeds.sort_by(f64::total_cmp);
    println!(
        "{:.0} MB/s best, {:.0} MB/s median of {rounds} rounds ({} MiB, pieces of {} KiB)",
        speeds[rounds - 1],
        speeds[rounds / 2],
        bytes.len() >> 20,
        piece >> 10
    );
}
