//! Replays the stored inputs of the `resp_request` fuzz target on stable: its seed corpus
//! (`fuzz/corpus/resp_request/`) and every input that once crashed it
//! (`fuzz/regressions/resp_request/`). Also checks the corpus holds every current seed.

use std::path::{Path, PathBuf};

use slotkv_resp::fuzzing::{run_request, seeds, REQUEST_TARGET};

fn inputs(kind: &str) -> Vec<PathBuf> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(REQUEST_TARGET);
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
}

#[test]
fn every_stored_resp_input_runs_clean() {
    let mut stored = Vec::new();
    for kind in ["corpus", "regressions"] {
        for path in inputs(kind) {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run_request(&data));
            assert!(
                outcome.is_ok(),
                "{REQUEST_TARGET} panicked on {}",
                path.display()
            );
            stored.push(data);
        }
    }
    for seed in seeds() {
        assert!(
            stored.contains(&seed),
            "seed {:?} is not in the corpus: run the seed-corpus binary of fuzz/",
            String::from_utf8_lossy(&seed)
        );
    }
}
