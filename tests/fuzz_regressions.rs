//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) and every crasher found so far
//! (`fuzz/regressions/<target>/`) through the fuzz targets' own bodies, so what the fuzzer once
//! found stays fixed without cargo-fuzz or a nightly toolchain. See `fuzz/README.md`.

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Every input file of a target, corpus and regressions, in a stable order.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for entry in dir {
            let path = entry.expect("readable fuzz directory").path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if path.is_file() && !hidden {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no inputs for fuzz target {target}");
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("readable fuzz input");
            catch_unwind(AssertUnwindSafe(|| body(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} inputs of {target} fail (reproduce with `cargo fuzz run {target} FILE` in fuzz/):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn query_path_corpus_and_regressions() {
    replay("query_path", checks::query_path);
}

#[test]
fn wire_corpus_and_regressions() {
    replay("wire", checks::wire);
}

#[test]
fn mapping_parse_corpus_and_regressions() {
    replay("mapping_parse", checks::mapping_parse);
}

#[test]
fn fixed_fuzz_mapping_parses() {
    let snapshot = splitdns::mapping::file::parse(&checks::mapping(), "fuzz", 5).unwrap();
    assert_eq!(snapshot.len(), 9);
    assert_eq!(snapshot.rule_count(), 4);
}

#[test]
fn every_udp_size_for_every_mapped_name() {
    checks::udp_size_sweep();
}
