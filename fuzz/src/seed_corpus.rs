//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/`: valid encodings
//! from the crates' own encoders, named by content so reruns add nothing new.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let cluster = slotkv_cluster::fuzzing::Target::ALL
        .iter()
        .map(|target| (target.name(), target.seeds()));
    let transport = slotkv_transport::fuzzing::Target::ALL
        .iter()
        .map(|target| (target.name(), target.seeds()));
    let resp = std::iter::once((
        slotkv_resp::fuzzing::REQUEST_TARGET,
        slotkv_resp::fuzzing::seeds(),
    ));
    for (name, seeds) in cluster.chain(transport).chain(resp) {
        let folder = root.join(name);
        std::fs::create_dir_all(&folder)?;
        for seed in &seeds {
            let digest = seed.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
            });
            std::fs::write(folder.join(format!("seed-{digest:016x}")), seed)?;
        }
        println!("{name}: {} seeds", seeds.len());
    }
    Ok(())
}
