// The wasmtime configuration of every guest engine. Included by `host/build.rs` too, which
// compiles the embedded guest with it ahead of time: an artifact loads only into an engine
// configured the same way, so both take it from here.

/// The engine configuration for kres-kafka guests, compiling for `target` (a target triple;
/// `None`: this machine, with every CPU feature it has).
pub fn engine_config(target: Option<&str>) -> wasmtime::Result<wasmtime::Config> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true).wasm_component_model(true);
    if let Some(target) = target {
        // A named target gets the architecture's baseline features: the artifact runs on any
        // CPU of it.
        config.target(target)?;
    }
    Ok(config)
}
