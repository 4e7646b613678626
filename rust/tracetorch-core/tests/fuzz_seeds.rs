//! Replays the fuzz seeds (`rust/fuzz/seeds`, including reproducers of past
//! fuzzer findings) through the body of the fuzz target, so CI keeps them fixed.

use std::path::Path;

#[path = "../../fuzz/exercise.rs"]
mod exercise;
use exercise::exercise;

#[test]
fn fuzz_seeds_and_reproducers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("rust/fuzz/seeds exists")
        .map(|e| e.expect("readable entry").path())
        .collect();
    files.sort();
    let mut loaded = 0;
    for path in &files {
        let data = std::fs::read(path).expect("readable seed");
        if exercise(&data) {
            loaded += 1;
        }
    }
    assert!(files.len() >= 5, "{files:?}");
    // The exported models load; reproducers may or may not.
    assert!(loaded >= 4, "only {loaded} of {} seeds loaded", files.len());
}
