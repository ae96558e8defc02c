//! ZooKeeper's digest authentication: `addauth digest user:password` makes the session the
//! identity `user:BASE64(SHA1("user:password"))`, the form digest ACLs are written in.

/// SHA-1 (FIPS 180-4). Only for ZooKeeper's digest scheme, which is defined with it.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let msg = crate::store::sha256::pad_be(data);
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The digest identity for `user:password` (DigestAuthenticationProvider.generateDigest).
pub fn digest_id(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    format!("{user}:{}", base64(&sha1(user_password.as_bytes())))
}

/// Puts a connection's identities (scheme, id) in the order ZooKeeper 3.8.0 lists them (whoAmI,
/// and an `auth` ACL's expansion): its ServerCnxn keeps them in a set backed by a
/// ConcurrentHashMap, which iterates by hash bucket and, inside a bucket, in insertion order.
/// The list is kept in insertion order otherwise, so a stable sort by bucket gives that. The
/// bucket is `spread(Id.hashCode()) & (table size - 1)`, the table 16 slots until 12 entries
/// (0.75 full), then doubling. (A resize also reverses part of a bucket's chain; with 12 or
/// more identities on one connection that order is not followed.)
pub fn order_like_zookeeper(ids: &mut [(String, String)]) {
    // String.hashCode over UTF-16 code units; Id.hashCode as jute generates it.
    fn java_hash(s: &str) -> i32 {
        s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
    }
    let mut slots = 16usize;
    while ids.len() >= slots - slots / 4 {
        slots *= 2;
    }
    ids.sort_by_key(|(scheme, id)| {
        let h =
            17i32.wrapping_mul(37).wrapping_add(java_hash(scheme)).wrapping_mul(37).wrapping_add(java_hash(id)) as u32;
        ((h ^ (h >> 16)) & 0x7fff_ffff) as usize & (slots - 1)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: identities listed as ZooKeeper 3.8.0 lists them. Method: the order its whoAmI gave
    /// for an ip identity and two digests added after it (seen against Debian's 3.8.0).
    #[test]
    fn identities_order_like_zookeepers_set() {
        let mut ids = vec![
            ("ip".to_string(), "127.0.0.1".to_string()),
            ("digest".to_string(), digest_id("")),
            ("digest".to_string(), digest_id("u:p")),
        ];
        order_like_zookeeper(&mut ids);
        let schemes: Vec<&str> = ids
            .iter()
            .map(|(s, i)| {
                if s == "ip" {
                    "ip"
                } else if i.starts_with(':') {
                    "digest ''"
                } else {
                    "digest u"
                }
            })
            .collect();
        assert_eq!(schemes, ["digest ''", "ip", "digest u"]);
    }

    #[test]
    fn sha1_and_base64_known_answers() {
        let hex: String = sha1(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        // ZooKeeper's documented example: super:test.
        assert_eq!(digest_id("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }
}
