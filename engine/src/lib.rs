//! `slotkv-engine`: the per-slot in-memory store every slotkv node embeds.
//!
//! The engine knows keys and hash slots, never nodes. Slot math lives in [`slot`].

pub mod slot;

pub use slot::{crc16, hash_tag, key_slot, Slot, SLOT_COUNT};
