//! The slotkv demo. Until the embedded node lands it shows the slot math the cluster shards by.

fn main() {
    for key in ["foo", "bar", "{user1000}.following", "{user1000}.followers"] {
        println!("{key:>24} -> slot {}", slotkv::key_slot(key.as_bytes()));
    }
}
