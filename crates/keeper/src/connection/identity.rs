//! A connection's authenticated identities, kept in the order ZooKeeper 3.8 lists them.
//!
//! ZooKeeper keeps a connection's identities in a set backed by a `ConcurrentHashMap`, so
//! whoAmI lists them, and an `auth` ACL expands into them, in that map's iteration order:
//! by hash bucket, then by insertion within a bucket. Clients see that order in reply bytes,
//! so corral keeps the list in it. Owns only the ordering; must not decide who is
//! authenticated.

use corral_proto::Id;

/// Adds `id` unless present (the set's semantics) and restores ZooKeeper's order.
pub(crate) fn add(ids: &mut Vec<Id>, id: Id) {
    if ids.contains(&id) {
        return;
    }
    ids.push(id);
    let buckets = table_size(ids.len());
    // A stable sort keeps insertion order within a bucket, as the map's bucket lists do.
    ids.sort_by_key(|i| bucket(i, buckets));
}

/// The map's table size holding `n` entries: 16, doubled once the count reaches three
/// quarters of it (12 entries make 32 buckets). (A resize can also reorder a bucket's
/// entries; no connection holds that many identities.)
fn table_size(n: usize) -> u32 {
    let mut size = 16u32;
    while n >= (size as usize) * 3 / 4 {
        size *= 2;
    }
    size
}

fn bucket(id: &Id, table_size: u32) -> u32 {
    // Id.hashCode as Jute generates it, then the map's spread of the hash.
    let h = 37i32
        .wrapping_mul(37i32.wrapping_mul(17).wrapping_add(java_hash(&id.scheme)))
        .wrapping_add(java_hash(&id.id));
    let h = h as u32;
    ((h ^ (h >> 16)) & 0x7fff_ffff) & (table_size - 1)
}

/// java.lang.String.hashCode: over UTF-16 code units.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(scheme: &str, id: &str) -> Id {
        Id {
            scheme: scheme.into(),
            id: id.into(),
        }
    }

    #[test]
    fn java_string_hash() {
        // Values of "".hashCode(), "ip".hashCode() and "digest".hashCode() in Java.
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("ip"), 3367);
        assert_eq!(java_hash("digest"), -1331913276);
    }

    #[test]
    fn ordered_by_bucket_then_insertion_and_deduplicated() {
        let mut ids = Vec::new();
        for i in 0..10 {
            add(&mut ids, id("digest", &format!("u{i}:x")));
        }
        add(&mut ids, id("digest", "u3:x"));
        assert_eq!(ids.len(), 10);
        let buckets: Vec<u32> = ids.iter().map(|i| bucket(i, 16)).collect();
        let mut sorted = buckets.clone();
        sorted.sort();
        assert_eq!(buckets, sorted);
    }
}
