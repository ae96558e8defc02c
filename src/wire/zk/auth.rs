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

/// Adds `id` to a connection's identities (scheme, id), kept in the order ZooKeeper 3.8.0
/// lists them (whoAmI, and an `auth` ACL's expansion); nothing if it is there already.
///
/// ZooKeeper's ServerCnxn keeps them in a set backed by a `ConcurrentHashMap`, which iterates
/// bucket by bucket and each bucket's chain in order. This models that map: the bucket is
/// `spread(Id.hashCode()) & (table size - 1)`; a new entry goes at the end of its chain; the
/// table starts at 16 buckets and doubles when the count reaches 3/4 of it (identities are
/// never removed, so the size follows from the count). A doubling splits each chain as
/// `ConcurrentHashMap.transfer` does: the chain's last run of entries bound for the same new
/// bucket stays in order at the end, the entries before it are moved one by one to the front
/// of their new bucket (so they come out reversed). Not modelled: a chain reaching 8 entries
/// in a table under 64 buckets (Java then doubles the table early), which takes 8 identities
/// in one of 16 buckets. `ids` must hold what this function made of them (the first, the
/// connection's ip identity, alone).
pub fn add_like_zookeeper(ids: &mut Vec<(String, String)>, id: (String, String)) {
    if ids.contains(&id) {
        return;
    }
    // String.hashCode over UTF-16 code units; Id.hashCode as jute generates it; then spread.
    fn java_hash(s: &str) -> i32 {
        s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
    }
    fn spread((scheme, id): &(String, String)) -> usize {
        let h =
            17i32.wrapping_mul(37).wrapping_add(java_hash(scheme)).wrapping_mul(37).wrapping_add(java_hash(id)) as u32;
        ((h ^ (h >> 16)) & 0x7fff_ffff) as usize
    }
    // The table for `count` entries: doubled each time the count reached 3/4 of it.
    let table_for = |count: usize| {
        let mut n = 16usize;
        while count >= n - n / 4 {
            n *= 2;
        }
        n
    };
    let n = table_for(ids.len());
    let mut bins: Vec<Vec<(String, String)>> = vec![Vec::new(); n];
    for e in ids.drain(..) {
        let b = spread(&e) & (n - 1);
        bins[b].push(e);
    }
    let b = spread(&id) & (n - 1);
    bins[b].push(id);
    let count: usize = bins.iter().map(Vec::len).sum();
    if table_for(count) > n {
        let mut doubled: Vec<Vec<(String, String)>> = vec![Vec::new(); 2 * n];
        for (i, chain) in bins.into_iter().enumerate() {
            let high = |e: &(String, String)| spread(e) & n != 0;
            // Start of the last run bound for one half: kept in order, behind the rest.
            let mut run = chain.len();
            while run > 0 && (run == chain.len() || high(&chain[run - 1]) == high(&chain[chain.len() - 1])) {
                run -= 1;
            }
            let (head, tail) = chain.split_at(run);
            let (mut lo, mut hi) = (Vec::new(), Vec::new());
            for e in head.iter().rev() {
                if high(e) {
                    hi.push(e.clone())
                } else {
                    lo.push(e.clone())
                }
            }
            match tail.first() {
                Some(e) if high(e) => hi.extend_from_slice(tail),
                _ => lo.extend_from_slice(tail),
            }
            doubled[i] = lo;
            doubled[i + n] = hi;
        }
        bins = doubled;
    }
    ids.extend(bins.into_iter().flatten());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: identities listed as ZooKeeper 3.8.0 lists them. Method: the orders its whoAmI
    /// gave (Debian's 3.8.0) for an ip identity and digests added after it: three, and eleven
    /// (the twelfth entry doubles the table, and a chain split reverses part of a bucket).
    #[test]
    fn identities_order_like_zookeepers_set() {
        // The user part of each digest identity, "ip" for the ip one.
        let order = |users: &[&str]| {
            let mut ids = vec![("ip".to_string(), "127.0.0.1".to_string())];
            for u in users {
                add_like_zookeeper(&mut ids, ("digest".to_string(), digest_id(u)));
            }
            // Adding one again changes nothing.
            add_like_zookeeper(&mut ids, ("digest".to_string(), digest_id(users[0])));
            ids.iter()
                .map(|(s, i)| if s == "ip" { "ip".to_string() } else { i.split(':').next().unwrap_or("").to_string() })
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&["", "u:p"]), ["", "ip", "u"]);
        let xs: Vec<String> = (0..11).map(|i| format!("x{i}:pw")).collect();
        let xs: Vec<&str> = xs.iter().map(String::as_str).collect();
        assert_eq!(order(&xs), ["x5", "x6", "x0", "x9", "ip", "x1", "x4", "x3", "x8", "x2", "x10", "x7"]);
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
