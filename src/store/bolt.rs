//! An etcd-compatible snapshot: the store written out as a bbolt database file, the format
//! `etcdctl snapshot save` receives from etcd and `etcdctl snapshot status|restore` read.
//!
//! bbolt layout (page size 4096, little-endian): pages 0 and 1 are meta pages (magic, version 2,
//! page size, root bucket page, freelist page, high-water mark, txid, FNV-1a checksum), page 2 an
//! empty freelist, then each bucket as a B+tree of leaf pages (sorted key/value elements) under
//! branch pages (first key and page id of each child), and finally the root bucket: a leaf page
//! whose elements name each bucket and point at its root page. An element larger than a page
//! spills into consecutive overflow pages. Every page below the high-water mark is reachable
//! exactly once, which is what bbolt's consistency check (`etcdctl snapshot status`) verifies.
//!
//! Buckets written, as etcd lays them out: `key` (etcd revision key -> mvccpb.KeyValue, every
//! kept change, the same bytes HashKV hashes), `lease` (8-byte big-endian id -> leasepb.Lease)
//! and `meta` (consistent index, compaction revisions).

pub const PAGE_BYTES: usize = 4096;
const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const BRANCH_FLAG: u16 = 0x01;
const LEAF_FLAG: u16 = 0x02;
const META_FLAG: u16 = 0x04;
const FREELIST_FLAG: u16 = 0x10;
const BUCKET_LEAF_FLAG: u32 = 0x01;

pub type Bucket = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

struct Pages {
    bytes: Vec<u8>,
}

impl Pages {
    fn next_id(&self) -> u64 {
        (self.bytes.len() / PAGE_BYTES) as u64
    }

    /// Appends a page (plus overflow pages if `body` does not fit one) and returns its id.
    fn push(&mut self, flags: u16, count: usize, body: &[u8]) -> u64 {
        let id = self.next_id();
        let total = PAGE_HEADER + body.len();
        let pages = total.div_ceil(PAGE_BYTES).max(1);
        let start = self.bytes.len();
        self.bytes.resize(start + pages * PAGE_BYTES, 0);
        let p = &mut self.bytes[start..];
        p[0..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&flags.to_le_bytes());
        p[10..12].copy_from_slice(&(count as u16).to_le_bytes());
        p[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
        p[PAGE_HEADER..PAGE_HEADER + body.len()].copy_from_slice(body);
        id
    }
}

/// Leaf page body: elements (flags, pos, ksize, vsize), then keys and values; `pos` counts
/// from the element itself.
fn leaf_body(items: &[(u32, &[u8], &[u8])]) -> Vec<u8> {
    let n = items.len();
    let mut elems = Vec::with_capacity(n * ELEMENT);
    let mut data = Vec::new();
    for (i, (flags, k, v)) in items.iter().enumerate() {
        let pos = (n - i) * ELEMENT + data.len();
        elems.extend_from_slice(&flags.to_le_bytes());
        elems.extend_from_slice(&(pos as u32).to_le_bytes());
        elems.extend_from_slice(&(k.len() as u32).to_le_bytes());
        elems.extend_from_slice(&(v.len() as u32).to_le_bytes());
        data.extend_from_slice(k);
        data.extend_from_slice(v);
    }
    elems.extend_from_slice(&data);
    elems
}

/// Branch page body: elements (pos, ksize, child page id), then the keys.
fn branch_body(items: &[(&[u8], u64)]) -> Vec<u8> {
    let n = items.len();
    let mut elems = Vec::with_capacity(n * ELEMENT);
    let mut data = Vec::new();
    for (i, (k, child)) in items.iter().enumerate() {
        let pos = (n - i) * ELEMENT + data.len();
        elems.extend_from_slice(&(pos as u32).to_le_bytes());
        elems.extend_from_slice(&(k.len() as u32).to_le_bytes());
        elems.extend_from_slice(&child.to_le_bytes());
        data.extend_from_slice(k);
    }
    elems.extend_from_slice(&data);
    elems
}

/// Splits `sizes` into runs that fit a page (a run holds at least one item).
fn chunks(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut used = PAGE_HEADER;
    for (i, s) in sizes.iter().enumerate() {
        if i > start && used + ELEMENT + s > PAGE_BYTES {
            out.push(start..i);
            start = i;
            used = PAGE_HEADER;
        }
        used += ELEMENT + s;
    }
    out.push(start..sizes.len());
    out
}

/// Writes one bucket's B+tree and returns its root page id. `items` must be sorted by key.
fn write_tree(pages: &mut Pages, items: &[(u32, &[u8], &[u8])]) -> u64 {
    let sizes: Vec<usize> = items.iter().map(|(_, k, v)| k.len() + v.len()).collect();
    let mut level: Vec<(&[u8], u64)> = Vec::new();
    for r in chunks(&sizes) {
        let part = &items[r];
        let id = pages.push(LEAF_FLAG, part.len(), &leaf_body(part));
        level.push((part.first().map(|i| i.1).unwrap_or(&[]), id));
    }
    while level.len() > 1 {
        let sizes: Vec<usize> = level.iter().map(|(k, _)| k.len()).collect();
        let mut up = Vec::new();
        for r in chunks(&sizes) {
            let part = &level[r];
            let id = pages.push(BRANCH_FLAG, part.len(), &branch_body(part));
            up.push((part[0].0, id));
        }
        level = up;
    }
    level[0].1
}

fn meta_page(page_id: u64, root: u64, hwm: u64, txid: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&MAGIC.to_le_bytes());
    m.extend_from_slice(&VERSION.to_le_bytes());
    m.extend_from_slice(&(PAGE_BYTES as u32).to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(&root.to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes()); // root bucket sequence
    m.extend_from_slice(&2u64.to_le_bytes()); // freelist page
    m.extend_from_slice(&hwm.to_le_bytes());
    m.extend_from_slice(&txid.to_le_bytes());
    // FNV-1a 64 over everything before the checksum.
    let h = super::fnv1a64(m.iter().copied());
    m.extend_from_slice(&h.to_le_bytes());
    let mut page = vec![0u8; PAGE_BYTES];
    page[0..8].copy_from_slice(&page_id.to_le_bytes());
    page[8..10].copy_from_slice(&META_FLAG.to_le_bytes());
    page[PAGE_HEADER..PAGE_HEADER + m.len()].copy_from_slice(&m);
    page
}

/// A whole bbolt file holding `buckets` (each bucket's items sorted by key, buckets by name).
pub fn write(buckets: &mut [Bucket]) -> Vec<u8> {
    buckets.sort_by(|a, b| a.0.cmp(&b.0));
    let mut pages = Pages { bytes: vec![0u8; 2 * PAGE_BYTES] };
    pages.push(FREELIST_FLAG, 0, &[]);
    let mut roots = Vec::new();
    for (name, items) in buckets.iter_mut() {
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let refs: Vec<(u32, &[u8], &[u8])> = items.iter().map(|(k, v)| (0, k.as_slice(), v.as_slice())).collect();
        let root = write_tree(&mut pages, &refs);
        let mut header = root.to_le_bytes().to_vec();
        header.extend_from_slice(&0u64.to_le_bytes());
        roots.push((name.clone(), header));
    }
    let refs: Vec<(u32, &[u8], &[u8])> =
        roots.iter().map(|(n, h)| (BUCKET_LEAF_FLAG, n.as_slice(), h.as_slice())).collect();
    let root = write_tree(&mut pages, &refs);
    let hwm = pages.next_id();
    pages.bytes[..PAGE_BYTES].copy_from_slice(&meta_page(0, root, hwm, 2));
    pages.bytes[PAGE_BYTES..2 * PAGE_BYTES].copy_from_slice(&meta_page(1, root, hwm, 1));
    pages.bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn layout_is_consistent() {
        let big = vec![7u8; 10_000];
        let mut buckets: Vec<Bucket> = vec![
            (b"key".to_vec(), (0..500u32).map(|i| (i.to_be_bytes().to_vec(), vec![1u8; 100])).collect()),
            (b"alpha".to_vec(), vec![(b"big".to_vec(), big)]),
            (b"empty".to_vec(), vec![]),
        ];
        let file = write(&mut buckets);
        assert_eq!(file.len() % PAGE_BYTES, 0);
        let hwm = u64_at(&file, PAGE_HEADER + 40);
        assert_eq!(hwm as usize, file.len() / PAGE_BYTES, "every page below the high-water mark exists");
        // Each page says its own id, overflow pages excepted.
        let mut id = 2;
        while id < hwm {
            let p = &file[id as usize * PAGE_BYTES..];
            assert_eq!(u64_at(p, 0), id);
            let overflow = u32::from_le_bytes(p[12..16].try_into().unwrap()) as u64;
            id += 1 + overflow;
        }
        assert_eq!(id, hwm);
        // The 500 keys need several leaves, so the key bucket's root is a branch page.
        let meta_root = u64_at(&file, PAGE_HEADER + 16);
        let root_page = &file[meta_root as usize * PAGE_BYTES..];
        assert_eq!(u16::from_le_bytes([root_page[8], root_page[9]]), LEAF_FLAG);
        assert_eq!(u16::from_le_bytes([root_page[10], root_page[11]]), 3, "three buckets");
    }
}
