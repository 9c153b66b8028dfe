//! The compact entry: header, key and value in one heap allocation behind a thin pointer.
//!
//! Layout (8-byte aligned), all in one allocation:
//!
//! ```text
//! [Header 8 B][WideLengths 8 B, if WIDE][ExpireExt 16 B, if EXPIRE][key][value]
//! ```
//!
//! * `Header`: a 16-bit reference count, the 24-bit access clock (LRU seconds, or LFU minutes
//!   and counter, see `access`), flags and the lengths of small keys (≤ 255 B) and values
//!   (< 16 KiB). Bigger entries set `WIDE` and store `u32` lengths.
//! * `ExpireExt`: only for entries created with a TTL: the absolute deadline (unix ms, `0` =
//!   none) and the entry's position in its slot's TTL index.
//!
//! A 16-byte key with a 32-byte value and no TTL takes 56 bytes. The table owns one reference;
//! every value handed out by GET owns another, so reads are zero-copy and a value outlives its
//! deletion for as long as a reader holds it. When the 16-bit count is saturated the caller copies
//! the value instead (see [`Entry::value_bytes`]).

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;

#[repr(C)]
struct Header {
    refs: AtomicU16,
    /// Bits 0..14: the value length of a small entry; bits 14..16: the flags.
    value_len_and_flags: u16,
    /// Bits 0..24: the access clock; bits 24..32: the key length of a small entry (never
    /// changes, so a store of the whole word that keeps it is a safe update of the clock).
    access_and_key_len: AtomicU32,
}

#[repr(C)]
struct WideLengths {
    key_len: u32,
    value_len: u32,
}

#[repr(C)]
struct ExpireExt {
    /// Absolute deadline in unix ms; `0` means no TTL.
    expire_at_ms: AtomicU64,
    /// Index in the slot's TTL index; only meaningful while `expire_at_ms != 0`.
    volatile_pos: AtomicU32,
    _reserved: u32,
}

const FLAG_WIDE: u16 = 1 << 14;
const FLAG_EXPIRE: u16 = 1 << 15;
const SMALL_VALUE_MAX: usize = (1 << 14) - 1;
const SMALL_KEY_MAX: usize = u8::MAX as usize;
/// The access clock's bits in `Header::access_and_key_len`.
pub(crate) const ACCESS_MASK: u32 = (1 << 24) - 1;
const HEADER_BYTES: usize = size_of::<Header>();
const WIDE_BYTES: usize = size_of::<WideLengths>();
const EXPIRE_BYTES: usize = size_of::<ExpireExt>();
const ENTRY_ALIGN: usize = 8;
/// Largest key or value an entry can hold (lengths are stored as `u32`).
pub(crate) const MAX_PART_BYTES: usize = u32::MAX as usize;
/// Handles beyond this count make readers copy the value instead of sharing it.
const MAX_REFS: u16 = u16::MAX;

/// Allocator bookkeeping per allocation assumed by the memory estimate (glibc: 8-byte size
/// word, 16-byte granularity).
const ALLOCATOR_OVERHEAD_BYTES: usize = 8;
const ALLOCATOR_GRANULE_BYTES: usize = 16;
/// Table cost per entry: an 8-byte bucket plus a control byte at hashbrown's load factor
/// (between 7/16 and 7/8), rounded up.
pub(crate) const TABLE_OVERHEAD_BYTES: usize = 16;
/// Cost of an entry's slot in its slot's TTL index.
pub(crate) const VOLATILE_INDEX_BYTES: usize = size_of::<usize>();

const _: () = assert!(HEADER_BYTES == 8);
const _: () = assert!(WIDE_BYTES == 8 && EXPIRE_BYTES == 16);
const _: () = assert!(align_of::<ExpireExt>() <= ENTRY_ALIGN);

/// An owned reference to a compact entry (like an `Arc`, with a 16-bit count).
pub(crate) struct Entry {
    ptr: NonNull<Header>,
}

// SAFETY: the key and value bytes are immutable after construction; every field that changes
// afterwards is an atomic, so shared access from many threads is sound.
unsafe impl Send for Entry {}
// SAFETY: see `Send`.
unsafe impl Sync for Entry {}

fn layout_for(len: usize) -> Layout {
    match Layout::from_size_align(len, ENTRY_ALIGN) {
        Ok(layout) => layout,
        // Unreachable: callers bound key and value lengths by `MAX_PART_BYTES`.
        Err(_) => panic!("entry of {len} bytes exceeds the address space"),
    }
}

impl Entry {
    /// A new entry holding `key` and the concatenation of `value_parts`.
    ///
    /// `expire_at_ms` reserves room for a TTL (and sets it); entries created without one must
    /// be rebuilt with [`Entry::rebuild`] to gain one.
    pub(crate) fn new(
        key: &[u8],
        value_parts: &[&[u8]],
        expire_at_ms: Option<u64>,
        access: u32,
    ) -> Entry {
        let value_len: usize = value_parts.iter().map(|part| part.len()).sum();
        assert!(key.len() <= MAX_PART_BYTES && value_len <= MAX_PART_BYTES);
        let wide = key.len() > SMALL_KEY_MAX || value_len > SMALL_VALUE_MAX;
        let has_ext = expire_at_ms.is_some();
        let data_offset = data_offset(wide, has_ext);
        let layout = layout_for(data_offset + key.len() + value_len);
        // SAFETY: the layout has a non-zero size (the header alone is 8 bytes).
        let base = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(base.cast::<Header>()) else {
            handle_alloc_error(layout)
        };
        let flags = if wide { FLAG_WIDE } else { 0 } | if has_ext { FLAG_EXPIRE } else { 0 };
        // SAFETY: `base` points to `layout.size()` writable bytes aligned to 8; every write
        // below stays inside them (offsets follow `data_offset`), and the regions are disjoint.
        unsafe {
            let (key_len_small, value_len_small) = if wide {
                (0, 0)
            } else {
                (key.len() as u32, value_len as u16)
            };
            ptr.as_ptr().write(Header {
                refs: AtomicU16::new(1),
                value_len_and_flags: value_len_small | flags,
                access_and_key_len: AtomicU32::new(key_len_small << 24 | access & ACCESS_MASK),
            });
            if wide {
                let lengths = WideLengths {
                    key_len: key.len() as u32,
                    value_len: value_len as u32,
                };
                base.add(HEADER_BYTES).cast::<WideLengths>().write(lengths);
            }
            if let Some(deadline) = expire_at_ms {
                let ext = ExpireExt {
                    expire_at_ms: AtomicU64::new(deadline),
                    volatile_pos: AtomicU32::new(u32::MAX),
                    _reserved: 0,
                };
                base.add(ext_offset(wide)).cast::<ExpireExt>().write(ext);
            }
            let mut cursor = base.add(data_offset);
            std::ptr::copy_nonoverlapping(key.as_ptr(), cursor, key.len());
            cursor = cursor.add(key.len());
            for part in value_parts {
                std::ptr::copy_nonoverlapping(part.as_ptr(), cursor, part.len());
                cursor = cursor.add(part.len());
            }
        }
        Entry { ptr }
    }

    /// A copy of this entry with `expire_at_ms` as its TTL (used to give a TTL to an entry
    /// that has no room for one). The access clock is carried over.
    pub(crate) fn rebuild(&self, expire_at_ms: Option<u64>) -> Entry {
        Entry::new(self.key(), &[self.value()], expire_at_ms, self.access())
    }

    #[inline]
    fn header(&self) -> &Header {
        // SAFETY: the header was initialised in `new` and lives as long as any reference.
        unsafe { self.ptr.as_ref() }
    }

    #[inline]
    fn flags(&self) -> u16 {
        self.header().value_len_and_flags & (FLAG_WIDE | FLAG_EXPIRE)
    }

    #[inline]
    fn is_wide(&self) -> bool {
        self.flags() & FLAG_WIDE != 0
    }

    #[inline]
    fn ext(&self) -> Option<&ExpireExt> {
        if self.flags() & FLAG_EXPIRE == 0 {
            return None;
        }
        // SAFETY: FLAG_EXPIRE means an initialised `ExpireExt` sits at `ext_offset`.
        unsafe {
            let base = self.ptr.as_ptr().cast::<u8>();
            Some(&*base.add(ext_offset(self.is_wide())).cast::<ExpireExt>())
        }
    }

    #[inline]
    fn lengths(&self) -> (usize, usize) {
        let header = self.header();
        if header.value_len_and_flags & FLAG_WIDE == 0 {
            let key_len = header.access_and_key_len.load(Ordering::Relaxed) >> 24;
            let value_len = header.value_len_and_flags & SMALL_VALUE_MAX as u16;
            return (key_len as usize, usize::from(value_len));
        }
        // SAFETY: FLAG_WIDE means initialised `WideLengths` follow the header.
        let wide = unsafe {
            &*self
                .ptr
                .as_ptr()
                .cast::<u8>()
                .add(HEADER_BYTES)
                .cast::<WideLengths>()
        };
        (wide.key_len as usize, wide.value_len as usize)
    }

    #[inline]
    fn data_offset(&self) -> usize {
        data_offset(self.is_wide(), self.flags() & FLAG_EXPIRE != 0)
    }

    /// The key bytes.
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        let (key_len, _) = self.lengths();
        // SAFETY: `key_len` initialised bytes start at the data offset.
        unsafe {
            let start = self.ptr.as_ptr().cast::<u8>().add(self.data_offset());
            std::slice::from_raw_parts(start, key_len)
        }
    }

    /// Whether this entry's key is `key`: lengths first, then the bytes (inline for short keys,
    /// the common case of every lookup).
    #[inline]
    pub(crate) fn has_key(&self, key: &[u8]) -> bool {
        let stored = self.key();
        stored.len() == key.len() && same_bytes(stored, key)
    }

    /// The value bytes.
    #[inline]
    pub(crate) fn value(&self) -> &[u8] {
        let (key_len, value_len) = self.lengths();
        // SAFETY: `value_len` initialised bytes follow the key.
        unsafe {
            let start = self.ptr.as_ptr().cast::<u8>();
            let start = start.add(self.data_offset() + key_len);
            std::slice::from_raw_parts(start, value_len)
        }
    }

    /// Bytes of the allocation.
    #[inline]
    pub(crate) fn allocation_bytes(&self) -> usize {
        let (key_len, value_len) = self.lengths();
        self.data_offset() + key_len + value_len
    }

    /// The accounted memory of this entry: its allocation rounded as the allocator does, its
    /// share of the hash table, and its slot in the TTL index if it has a TTL.
    #[inline]
    pub(crate) fn memory_bytes(&self) -> usize {
        let allocation = (self.allocation_bytes() + ALLOCATOR_OVERHEAD_BYTES)
            .next_multiple_of(ALLOCATOR_GRANULE_BYTES);
        let volatile = if self.expire_at_ms().is_some() {
            VOLATILE_INDEX_BYTES
        } else {
            0
        };
        allocation + TABLE_OVERHEAD_BYTES + volatile
    }

    /// The absolute deadline in unix ms, if the entry has a TTL.
    #[inline]
    pub(crate) fn expire_at_ms(&self) -> Option<u64> {
        let deadline = self.ext()?.expire_at_ms.load(Ordering::Relaxed);
        (deadline != 0).then_some(deadline)
    }

    /// Whether the entry has room for a TTL without being rebuilt.
    pub(crate) fn can_hold_expire(&self) -> bool {
        self.ext().is_some()
    }

    /// Sets (or with `None` clears) the deadline; returns `false` if the entry has no room.
    /// Only called under the slot's write lock.
    pub(crate) fn store_expire_at_ms(&self, expire_at_ms: Option<u64>) -> bool {
        match self.ext() {
            Some(ext) => {
                ext.expire_at_ms
                    .store(expire_at_ms.unwrap_or(0), Ordering::Relaxed);
                true
            }
            None => expire_at_ms.is_none(),
        }
    }

    /// Whether the entry's deadline is at or before `now_ms`.
    #[inline]
    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at_ms()
            .is_some_and(|deadline| deadline <= now_ms)
    }

    pub(crate) fn volatile_pos(&self) -> usize {
        self.ext().map_or(usize::MAX, |ext| {
            ext.volatile_pos.load(Ordering::Relaxed) as usize
        })
    }

    pub(crate) fn store_volatile_pos(&self, pos: usize) {
        if let Some(ext) = self.ext() {
            ext.volatile_pos.store(pos as u32, Ordering::Relaxed);
        }
    }

    /// The 24-bit access clock (see `access` for its meaning under each policy).
    #[inline]
    pub(crate) fn access(&self) -> u32 {
        self.header().access_and_key_len.load(Ordering::Relaxed) & ACCESS_MASK
    }

    /// Sets the access clock to `access` (its low 24 bits); skips the store if unchanged, so
    /// reads of a key within one clock tick write nothing. Concurrent readers may race: one of
    /// their values wins, which is all an approximate LRU/LFU needs.
    #[inline]
    pub(crate) fn touch(&self, access: u32) {
        let word = &self.header().access_and_key_len;
        let current = word.load(Ordering::Relaxed);
        let access = access & ACCESS_MASK;
        if current & ACCESS_MASK != access {
            word.store(current & !ACCESS_MASK | access, Ordering::Relaxed);
        }
    }

    /// Whether `self` and `other` are the same allocation.
    pub(crate) fn same_as(&self, other: *const ()) -> bool {
        self.ptr.as_ptr().cast::<()>().cast_const() == other
    }

    /// The address of the allocation, as an identity for later `same_as` checks.
    pub(crate) fn identity(&self) -> *const () {
        self.ptr.as_ptr().cast::<()>().cast_const()
    }

    /// Another reference to this entry, or `None` when the count is saturated.
    fn try_share(&self) -> Option<Entry> {
        let refs = &self.header().refs;
        let mut current = refs.load(Ordering::Relaxed);
        loop {
            if current == MAX_REFS {
                return None;
            }
            match refs.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Entry { ptr: self.ptr }),
                Err(actual) => current = actual,
            }
        }
    }

    /// The value as `Bytes`: a zero-copy handle on this entry, or a copy if the reference
    /// count is saturated.
    pub(crate) fn value_bytes(&self) -> Bytes {
        match self.try_share() {
            Some(shared) => Bytes::from_owner(ValueOwner(shared)),
            None => Bytes::copy_from_slice(self.value()),
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if self.header().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        let layout = layout_for(self.allocation_bytes());
        // SAFETY: this was the last reference; the allocation came from `alloc` with the same
        // layout (same flags and lengths), and nothing in it needs dropping.
        unsafe { dealloc(self.ptr.as_ptr().cast::<u8>(), layout) }
    }
}

/// `a == b` for slices of equal length; two overlapping 8-byte loads per side for 8..=16
/// bytes instead of a call to `memcmp`.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if !(8..=16).contains(&len) || b.len() != len {
        return a == b;
    }
    let word = |bytes: &[u8], at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_ne_bytes(word)
    };
    word(a, 0) == word(b, 0) && word(a, len - 8) == word(b, len - 8)
}

#[inline]
fn ext_offset(wide: bool) -> usize {
    HEADER_BYTES + if wide { WIDE_BYTES } else { 0 }
}

#[inline]
fn data_offset(wide: bool, has_ext: bool) -> usize {
    ext_offset(wide) + if has_ext { EXPIRE_BYTES } else { 0 }
}

/// Keeps an entry alive while a `Bytes` handed out by a read refers to its value.
struct ValueOwner(Entry);

impl AsRef<[u8]> for ValueOwner {
    fn as_ref(&self) -> &[u8] {
        self.0.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_entry_without_ttl_is_header_plus_payload() {
        let entry = Entry::new(b"0123456789abcdef", &[&[7u8; 32]], None, 3);
        assert_eq!(entry.allocation_bytes(), 8 + 16 + 32);
        assert_eq!(entry.key(), b"0123456789abcdef");
        assert_eq!(entry.value(), &[7u8; 32]);
        assert_eq!(entry.expire_at_ms(), None);
        assert_eq!(entry.access(), 3);
        assert!(!entry.can_hold_expire());
        assert_eq!(entry.memory_bytes(), 64 + TABLE_OVERHEAD_BYTES);
    }

    #[test]
    fn wide_entry_with_ttl_round_trips() {
        let key = vec![b'k'; 300];
        let value = vec![b'v'; 70_000];
        let entry = Entry::new(&key, &[&value[..10], &value[10..]], Some(42), 0);
        assert_eq!(entry.key(), &key[..]);
        assert_eq!(entry.value(), &value[..]);
        assert_eq!(entry.expire_at_ms(), Some(42));
        assert!(entry.is_expired(42));
        assert!(!entry.is_expired(41));
        assert!(entry.store_expire_at_ms(None));
        assert_eq!(entry.expire_at_ms(), None);
        assert_eq!(entry.allocation_bytes(), 8 + 8 + 16 + 300 + 70_000);
    }

    #[test]
    fn has_key_compares_every_byte_of_every_length() {
        for len in 0..40usize {
            let key: Vec<u8> = (0..len as u8).collect();
            let entry = Entry::new(&key, &[b"v"], None, 0);
            assert!(entry.has_key(&key));
            for at in 0..len {
                let mut other = key.clone();
                other[at] ^= 0x40;
                assert!(!entry.has_key(&other), "{len} {at}");
            }
            assert!(!entry.has_key(&key[..len.saturating_sub(1)]) || len == 0);
        }
    }

    #[test]
    fn touching_the_access_clock_keeps_the_lengths() {
        let entry = Entry::new(&[b'k'; 255], &[&[b'v'; SMALL_VALUE_MAX]], None, 7);
        assert!(!entry.is_wide());
        entry.touch(ACCESS_MASK);
        assert_eq!(entry.access(), ACCESS_MASK);
        entry.touch(u32::MAX - ACCESS_MASK);
        assert_eq!(entry.access(), 0);
        assert_eq!(entry.key(), &[b'k'; 255][..]);
        assert_eq!(entry.value().len(), SMALL_VALUE_MAX);
        let wide = Entry::new(b"k", &[&[b'v'; SMALL_VALUE_MAX + 1]], Some(9), 1);
        assert!(wide.is_wide());
        wide.touch(12_345);
        assert_eq!(
            (wide.key(), wide.value().len()),
            (&b"k"[..], SMALL_VALUE_MAX + 1)
        );
        assert_eq!(wide.expire_at_ms(), Some(9));
    }

    #[test]
    fn empty_key_and_value_are_fine() {
        let entry = Entry::new(b"", &[], None, 0);
        assert_eq!(entry.key(), b"");
        assert_eq!(entry.value(), b"");
        assert_eq!(entry.value_bytes(), Bytes::new());
    }

    #[test]
    fn value_outlives_the_entry_it_came_from() {
        let entry = Entry::new(b"key", &[b"value"], None, 0);
        let value = entry.value_bytes();
        drop(entry);
        assert_eq!(&value[..], b"value");
        let copy = value.clone();
        drop(value);
        assert_eq!(&copy[..], b"value");
    }

    #[test]
    fn saturated_reference_count_falls_back_to_copies() {
        let entry = Entry::new(b"key", &[b"value"], None, 0);
        let handles: Vec<Bytes> = (0..usize::from(MAX_REFS))
            .map(|_| entry.value_bytes())
            .collect();
        assert_eq!(entry.header().refs.load(Ordering::Relaxed), MAX_REFS);
        let copied = entry.value_bytes();
        assert_eq!(&copied[..], b"value");
        drop(handles);
        assert_eq!(entry.header().refs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn rebuild_adds_room_for_a_ttl() {
        let entry = Entry::new(b"key", &[b"value"], None, 9);
        assert!(!entry.store_expire_at_ms(Some(5)));
        let rebuilt = entry.rebuild(Some(5));
        assert_eq!(rebuilt.expire_at_ms(), Some(5));
        assert_eq!(rebuilt.value(), b"value");
        assert_eq!(rebuilt.access(), 9);
    }
}
