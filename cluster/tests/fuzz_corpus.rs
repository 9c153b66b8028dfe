//! Replays every stored fuzz input on stable: the seed corpus (`fuzz/corpus/<target>/`) and
//! the inputs that once crashed a target (`fuzz/regressions/<target>/`, each kept as a
//! regression test). A target that panics on one names the file.

use std::path::{Path, PathBuf};

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
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

fn replay(target: &str, run: impl Fn(&[u8])) -> usize {
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        for path in inputs(kind, target) {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&data)));
            assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn every_stored_fuzz_input_runs_clean() {
    for target in slotkv_cluster::fuzzing::Target::ALL {
        let count = replay(target.name(), |data| target.run(data));
        assert!(count > 0, "no stored inputs for {}", target.name());
    }
    for target in slotkv_transport::fuzzing::Target::ALL {
        let count = replay(target.name(), |data| target.run(data));
        assert!(count > 0, "no stored inputs for {}", target.name());
    }
}
