use std::sync::Arc;

use slotkv_engine::{ManualClock, StoreConfig};

use super::*;

const START_MS: u64 = 1_700_000_000_000;
const WRITER: NodeId = NodeId([0x5a; NODE_ID_BYTES]);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("slotkv-snapshot-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn file(&self) -> PathBuf {
        self.0.join(SNAPSHOT_FILE)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn store(clock: &Arc<ManualClock>) -> Store {
    Store::new(StoreConfig::default(), Arc::clone(clock) as Arc<dyn Clock>)
}

/// 300 keys: a third without TTL, a third expiring in 1 s, a third in 1 h.
fn filled(clock: &Arc<ManualClock>) -> Store {
    let store = store(clock);
    for index in 0..300u64 {
        let key = format!("key:{index}");
        let deadline = match index % 3 {
            0 => None,
            1 => Some(START_MS + 1_000),
            _ => Some(START_MS + 3_600_000),
        };
        let value = format!("value-{index}").repeat(index as usize % 7 + 1);
        store
            .apply_set(key.as_bytes(), value.as_bytes(), deadline)
            .unwrap();
    }
    store
}

/// A valid snapshot of [`filled`], written by [`WRITER`]; its bytes.
fn valid_snapshot(dir: &TempDir) -> Vec<u8> {
    let clock = Arc::new(ManualClock::new(START_MS));
    save_snapshot(&dir.file(), &filled(&clock), clock.as_ref(), WRITER).unwrap();
    std::fs::read(dir.file()).unwrap()
}

fn load_bytes(dir: &TempDir, bytes: &[u8]) -> Result<Option<LoadedSnapshot>, SnapshotLoadError> {
    std::fs::write(dir.file(), bytes).unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    load_snapshot(&dir.file(), &store(&clock), clock.as_ref(), WRITER)
}

/// Reseals `bytes` (so only its content is wrong) and returns the load's refusal.
fn refusal_of_resealed(dir: &TempDir, mut bytes: Vec<u8>) -> SnapshotLoadError {
    reseal(&mut bytes);
    load_bytes(dir, &bytes).expect_err("a damaged snapshot was accepted")
}

/// Replaces the checksum at the end so the content is accepted as written.
fn reseal(bytes: &mut [u8]) {
    let content = bytes.len() - CHECKSUM_BYTES as usize;
    let checksum = crc32fast::hash(&bytes[..content]);
    bytes[content..].copy_from_slice(&checksum.to_le_bytes());
}

#[test]
fn a_snapshot_round_trips_keys_values_and_absolute_expiry_skipping_the_expired() {
    let dir = TempDir::new("round-trip");
    let clock = Arc::new(ManualClock::new(START_MS));
    let original = filled(&clock);
    let info = save_snapshot(&dir.file(), &original, clock.as_ref(), WRITER).unwrap();
    assert_eq!(info.keys, 300);
    assert_eq!(info.bytes, std::fs::metadata(dir.file()).unwrap().len());

    // Two seconds later the 1-second keys are gone; the others keep their deadlines.
    let later = Arc::new(ManualClock::new(START_MS + 2_000));
    let loaded_store = store(&later);
    let loaded = load_snapshot(&dir.file(), &loaded_store, later.as_ref(), WRITER)
        .unwrap()
        .unwrap();
    assert_eq!((loaded.keys, loaded.expired), (200, 100));
    assert_eq!(loaded.created_unix_ms, START_MS);
    assert_eq!(loaded_store.dbsize(), 200);
    for index in 0..300u64 {
        let key = format!("key:{index}");
        let value = loaded_store.get(key.as_bytes());
        match index % 3 {
            1 => assert_eq!(value, None, "{key} had expired"),
            remainder => {
                assert_eq!(value, original.get(key.as_bytes()), "{key}");
                let expected_pttl = if remainder == 0 {
                    -1
                } else {
                    3_600_000 - 2_000
                };
                assert_eq!(loaded_store.pttl(key.as_bytes()), expected_pttl, "{key}");
            }
        }
    }
}

#[test]
fn an_empty_engine_round_trips_and_a_missing_file_is_no_snapshot() {
    let dir = TempDir::new("empty");
    let clock = Arc::new(ManualClock::new(START_MS));
    let info = save_snapshot(&dir.file(), &store(&clock), clock.as_ref(), WRITER).unwrap();
    assert_eq!((info.keys, info.bytes), (0, HEADER_BYTES + END_BYTES));
    let loaded = load_snapshot(&dir.file(), &store(&clock), clock.as_ref(), WRITER).unwrap();
    assert_eq!(loaded.map(|loaded| loaded.keys), Some(0));
    std::fs::remove_file(dir.file()).unwrap();
    assert!(
        load_snapshot(&dir.file(), &store(&clock), clock.as_ref(), WRITER)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_file_that_is_not_a_snapshot_is_refused_as_bad_magic() {
    let dir = TempDir::new("magic");
    let error = load_bytes(
        &dir,
        b"*1\r\n$4\r\nPING\r\n and more bytes than a header holds, \
        so the magic is what tells",
    )
    .unwrap_err();
    assert!(
        matches!(error, SnapshotLoadError::BadMagic { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(SNAPSHOT_FILE), "{error}");
    assert!(error.to_string().contains("delete it"), "{error}");
    let error = load_bytes(&dir, b"RDB").unwrap_err();
    assert!(
        matches!(error, SnapshotLoadError::BadMagic { .. }),
        "{error}"
    );
}

#[test]
fn a_truncated_snapshot_is_refused() {
    let dir = TempDir::new("truncated");
    let bytes = valid_snapshot(&dir);
    for length in [
        0,
        5,
        HEADER_BYTES as usize,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        let error = load_bytes(&dir, &bytes[..length]).unwrap_err();
        let expected = matches!(error, SnapshotLoadError::Truncated { .. })
            || (length > (HEADER_BYTES + END_BYTES) as usize
                && matches!(error, SnapshotLoadError::ChecksumMismatch { .. }));
        assert!(expected, "cut at {length}: {error}");
    }
    // Cut after a record and resealed: the checksum holds, the end record is missing.
    let mut cut = bytes[..bytes.len() - (END_BYTES as usize)].to_vec();
    cut.extend_from_slice(&[0; CHECKSUM_BYTES as usize]);
    let error = refusal_of_resealed(&dir, cut);
    assert!(
        matches!(error, SnapshotLoadError::Truncated { .. }),
        "{error}"
    );
}

#[test]
fn a_flipped_byte_is_a_checksum_mismatch() {
    let dir = TempDir::new("checksum");
    let mut bytes = valid_snapshot(&dir);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    let error = load_bytes(&dir, &bytes).unwrap_err();
    assert!(
        matches!(error, SnapshotLoadError::ChecksumMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("corrupt"), "{error}");
}

#[test]
fn a_snapshot_of_another_node_is_refused_naming_both() {
    let dir = TempDir::new("other-node");
    let bytes = valid_snapshot(&dir);
    std::fs::write(dir.file(), &bytes).unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let other = NodeId([0x11; NODE_ID_BYTES]);
    let error = load_snapshot(&dir.file(), &store(&clock), clock.as_ref(), other).unwrap_err();
    assert!(
        matches!(error, SnapshotLoadError::OtherNode { found, expected, .. }
        if found == WRITER && expected == other),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains(&WRITER.to_string()) && message.contains(&other.to_string()));
}

#[test]
fn a_snapshot_of_a_future_format_version_is_refused() {
    let dir = TempDir::new("version");
    let mut bytes = valid_snapshot(&dir);
    bytes[8..12].copy_from_slice(&(SNAPSHOT_FORMAT_VERSION + 1).to_le_bytes());
    let error = refusal_of_resealed(&dir, bytes);
    assert!(
        matches!(error, SnapshotLoadError::UnsupportedVersion { version, .. }
        if version == SNAPSHOT_FORMAT_VERSION + 1),
        "{error}"
    );
    assert!(error.to_string().contains("newer slotkv"), "{error}");
}

#[test]
fn lengths_beyond_the_engine_limit_or_the_file_are_refused_before_allocating() {
    let dir = TempDir::new("oversized");
    let mut bytes = valid_snapshot(&dir);
    let first_key_length = HEADER_BYTES as usize + 1;
    bytes[first_key_length..first_key_length + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let error = refusal_of_resealed(&dir, bytes);
    assert!(
        matches!(error, SnapshotLoadError::Oversized { what: "key", .. }),
        "{error}"
    );
    // Within the engine's limit but past the end of the file.
    let mut bytes = valid_snapshot(&dir);
    bytes[first_key_length..first_key_length + 4].copy_from_slice(&(1u32 << 28).to_le_bytes());
    let error = refusal_of_resealed(&dir, bytes);
    assert!(
        matches!(error, SnapshotLoadError::Truncated { .. }),
        "{error}"
    );
}

#[test]
fn an_unknown_record_or_a_wrong_key_count_is_malformed() {
    let dir = TempDir::new("malformed");
    let mut bytes = valid_snapshot(&dir);
    bytes[HEADER_BYTES as usize] = 7;
    let error = refusal_of_resealed(&dir, bytes);
    assert!(matches!(
        error,
        SnapshotLoadError::Malformed {
            reason: "unknown record tag",
            ..
        }
    ));
    let mut bytes = valid_snapshot(&dir);
    let count = bytes.len() - (CHECKSUM_BYTES + 8) as usize;
    bytes[count..count + 8].copy_from_slice(&299u64.to_le_bytes());
    let error = refusal_of_resealed(&dir, bytes);
    assert!(
        matches!(error, SnapshotLoadError::Malformed { .. }),
        "{error}"
    );
}

#[test]
fn random_byte_flips_and_cuts_are_refused_and_never_panic() {
    let dir = TempDir::new("fuzz");
    let bytes = valid_snapshot(&dir);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..300 {
        let mut damaged = bytes.clone();
        let flips = 1 + next() % 4;
        for _ in 0..flips {
            let at = (next() % damaged.len() as u64) as usize;
            damaged[at] ^= (next() % 255 + 1) as u8;
        }
        if round % 3 == 0 {
            damaged.truncate((next() % damaged.len() as u64) as usize);
        }
        if round % 5 == 0 {
            reseal_if_long_enough(&mut damaged);
        }
        // Resealed damage may still be a valid file (a flipped value byte); otherwise refused.
        let result = load_bytes(&dir, &damaged);
        assert!(
            result.is_err() || round % 5 == 0,
            "round {round} accepted a damaged file"
        );
    }
}

fn reseal_if_long_enough(bytes: &mut [u8]) {
    if bytes.len() >= CHECKSUM_BYTES as usize {
        reseal(bytes);
    }
}
