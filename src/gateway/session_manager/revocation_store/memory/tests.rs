//! The sharded set: expiry, boundary ids, crowded shards, merges and
//! concurrent revoke + lookup.

use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

const NOW: u64 = 1_700_000_000;
const HOUR: u64 = 3_600;

fn text(bytes: [u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An id in shard `shard` whose other bytes spell `n`.
fn id_in(shard: u16, n: u32) -> [u8; 32] {
    let mut b = [0u8; 32];
    let top = shard << (16 - SHARD_BITS);
    b[..2].copy_from_slice(&top.to_be_bytes());
    b[28..].copy_from_slice(&n.to_be_bytes());
    b
}

fn revoked_jti(set: &MemorySet, jti: &str, now: u64) -> bool {
    set.is_revoked_at(jti, "", "", NOW, now)
}

#[test]
fn a_revoked_id_is_in_force_through_until_and_not_after() {
    let set = MemorySet::new();
    let id = text(id_in(7, 1));
    set.insert(&Revocation::token(id.clone(), NOW + HOUR), NOW);
    assert!(revoked_jti(&set, &id, NOW));
    assert!(revoked_jti(&set, &id, NOW + HOUR));
    assert!(!revoked_jti(&set, &id, NOW + HOUR + 1));
    // Another id of the same shard is not revoked.
    assert!(!revoked_jti(&set, &text(id_in(7, 2)), NOW));
}

#[test]
fn pairs_that_are_over_are_dropped_when_their_shard_is_written() {
    let set = MemorySet::new();
    set.insert(&Revocation::token(text(id_in(3, 1)), NOW + 10), NOW);
    set.insert(&Revocation::token(text(id_in(3, 2)), NOW + HOUR), NOW);
    set.run_pending_tasks();
    assert_eq!(set.len(), 2);
    // Within the wall-clock slack the over pair is kept…
    let later = NOW + 10 + WALL_CLOCK_SLACK.as_secs();
    set.insert(&Revocation::token(text(id_in(3, 3)), NOW + HOUR), later);
    set.run_pending_tasks();
    assert_eq!(set.len(), 3);
    assert!(
        !revoked_jti(&set, &text(id_in(3, 1)), later),
        "over by the wall clock"
    );
    // …and dropped by the first write after it.
    set.insert(&Revocation::token(text(id_in(3, 4)), NOW + HOUR), later + 1);
    set.run_pending_tasks();
    assert_eq!(set.len(), 3);
    for n in 2..=4 {
        assert!(revoked_jti(&set, &text(id_in(3, n)), later + 1), "{n}");
    }
}

#[test]
fn a_shards_moka_lifetime_is_that_of_its_longest_pair() {
    let set = MemorySet::new();
    set.insert(&Revocation::token(text(id_in(9, 1)), NOW + HOUR), NOW);
    set.insert(&Revocation::token(text(id_in(9, 2)), NOW + 10), NOW);
    let shard = set.tokens.shards.get(&9).unwrap();
    assert_eq!(shard.ttl, ttl(NOW + HOUR, NOW));
}

#[test]
fn boundary_ids_land_in_the_first_and_last_shard() {
    let (zero, ones) = (
        RandomId::from_bytes([0; 32]),
        RandomId::from_bytes([0xff; 32]),
    );
    assert_eq!(shard_of(&zero), 0);
    assert_eq!(usize::from(shard_of(&ones)), SHARDS - 1);
    let set = MemorySet::new();
    for id in [zero, ones] {
        assert!(!revoked_jti(&set, &id.to_string(), NOW));
        set.insert(&Revocation::token(id.to_string(), NOW + HOUR), NOW);
    }
    for id in [zero, ones] {
        assert!(revoked_jti(&set, &id.to_string(), NOW));
    }
    // Neighbours of the extremes in their shards are not.
    let mut next = [0u8; 32];
    next[31] = 1;
    let mut before = [0xffu8; 32];
    before[31] = 0xfe;
    assert!(!revoked_jti(&set, &text(next), NOW));
    assert!(!revoked_jti(&set, &text(before), NOW));
}

#[test]
fn many_ids_in_one_shard_are_each_found() {
    let set = MemorySet::new();
    // Inserted out of order: every third of 3,000 ids in shard 42.
    let revoked: Vec<u32> = (0..3_000).rev().filter(|n| n % 3 == 0).collect();
    for &n in &revoked {
        set.insert(&Revocation::token(text(id_in(42, n)), NOW + HOUR), NOW);
    }
    set.run_pending_tasks();
    assert_eq!(set.len(), 1_000);
    assert_eq!(set.tokens.shards.entry_count(), 1, "all in one shard");
    for n in 0..3_000 {
        assert_eq!(
            revoked_jti(&set, &text(id_in(42, n)), NOW),
            n % 3 == 0,
            "{n}"
        );
    }
}

#[test]
fn revoking_an_id_twice_keeps_one_pair_with_the_later_until() {
    let set = MemorySet::new();
    let id = text(id_in(1, 1));
    set.insert(&Revocation::session(id.clone(), NOW + HOUR), NOW);
    set.insert(&Revocation::session(id.clone(), NOW + 10), NOW);
    set.run_pending_tasks();
    assert_eq!(set.len(), 1);
    assert!(set.is_revoked_at("", &id, "", NOW, NOW + HOUR));
    assert!(!set.is_revoked_at("", &id, "", NOW, NOW + HOUR + 1));
    // A sid revocation does not revoke the same id as a jti.
    assert!(!revoked_jti(&set, &id, NOW));
}

#[test]
fn free_form_ids_are_kept_as_strings_and_never_alias_a_canonical_id() {
    let set = MemorySet::new();
    let canonical = text([7u8; 32]);
    // Same bytes, non-zero unused trailing bits: a different string.
    let alias = format!("{}d", &canonical[..42]);
    set.insert(&Revocation::token(alias.clone(), NOW + HOUR), NOW);
    set.insert(&Revocation::token("jti-1", NOW + HOUR), NOW);
    assert!(revoked_jti(&set, &alias, NOW));
    assert!(revoked_jti(&set, "jti-1", NOW));
    assert!(!revoked_jti(&set, &canonical, NOW));
    set.insert(&Revocation::token(canonical.clone(), NOW + HOUR), NOW);
    set.run_pending_tasks();
    assert!(revoked_jti(&set, &canonical, NOW));
    assert_eq!(set.len(), 3);
}

#[test]
fn concurrent_revocations_in_one_shard_are_all_kept_and_never_unseen() {
    let set = MemorySet::new();
    const WRITERS: u32 = 4;
    const PER_WRITER: u32 = 250;
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (set, done) = (&set, &done);
            s.spawn(move || {
                for i in 0..PER_WRITER {
                    let id = text(id_in(5, w * PER_WRITER + i));
                    set.insert(&Revocation::token(id.clone(), NOW + HOUR), NOW);
                    // In force as soon as insert returns, whatever else
                    // is being written to the shard.
                    assert!(revoked_jti(set, &id, NOW));
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        // A reader: an id once seen revoked stays revoked.
        let (set, done) = (&set, &done);
        s.spawn(move || {
            let mut seen = vec![false; (WRITERS * PER_WRITER) as usize];
            while done.load(Ordering::SeqCst) < WRITERS as usize {
                for (n, was) in seen.iter_mut().enumerate() {
                    let now = revoked_jti(set, &text(id_in(5, n as u32)), NOW);
                    assert!(now || !*was, "id {n} was revoked, then not");
                    *was = now;
                }
            }
        });
    });
    for n in 0..WRITERS * PER_WRITER {
        assert!(revoked_jti(&set, &text(id_in(5, n)), NOW), "{n}");
    }
    set.run_pending_tasks();
    assert_eq!(set.len(), u64::from(WRITERS * PER_WRITER));
}
