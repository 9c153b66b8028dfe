//! A node that comes back on a new address with its saved config (same id) is found again:
//! it announces the address it was started with, every node moves it there and nobody keeps
//! it failing.

use slotkv_cluster::sim::Simulator;

#[test]
fn a_replica_back_on_a_new_bus_port_is_known_there_by_every_node() {
    let mut sim = Simulator::formed(6, 3, 61, 1000).unwrap_or_else(|error| panic!("{error}"));
    let moved = sim.id_of(4).unwrap();
    sim.kill(4);
    let failed = sim
        .run_until(20_000, |sim| {
            sim.live_nodes()
                .iter()
                .all(|index| sim.core(*index).unwrap().node(&moved).unwrap().is_failed())
        })
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(failed, "the killed replica was never FAIL");
    sim.set_bus_port(4, 17_001);
    sim.restart(4).unwrap_or_else(|error| panic!("{error}"));
    let found = sim
        .run_until(20_000, |sim| {
            (0..6).filter(|index| *index != 4).all(|index| {
                let record = sim.core(index).unwrap().node(&moved).unwrap();
                record.bus_port == 17_001 && !record.is_failing()
            })
        })
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(found, "{}", sim.trace_text());
    assert_eq!(sim.core(4).unwrap().myself().bus_port, 17_001);
}
