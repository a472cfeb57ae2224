//! The fuzz targets' bodies. They live in `checks.rs`, which `tests/fuzz_regressions.rs` also
//! includes, so every corpus and regression input is replayed by a plain `cargo test`.

mod checks;

pub use checks::{mapping, mapping_parse, query_path, udp_size_sweep, wire};
