//! FNV-1a (64-bit), written out by hand.
//!
//! The mock's upload endpoint must prove that every byte of a streamed body
//! arrived in order, without buffering it. A keyed or cryptographic hash is
//! not needed for that (nothing here is adversarial), and FNV-1a is a few
//! lines that any test can recompute, so it is named for what it is rather
//! than dressed up as a digest.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Incremental FNV-1a 64: feeding a byte string in any split gives the same
/// result as feeding it whole, which is what lets the mock hash frame by
/// frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv1a64 {
    state: u64,
    len: u64,
}

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv1a64 {
    pub const fn new() -> Self {
        Fnv1a64 { state: OFFSET_BASIS, len: 0 }
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut h = self.state;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
        self.state = h;
        self.len += data.len() as u64;
    }

    pub fn finish(&self) -> u64 {
        self.state
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The form the mock puts in JSON: 16 lowercase hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.state)
    }
}

/// One-shot FNV-1a 64 of `data`.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h = Fnv1a64::new();
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_published_test_vectors() {
        // Vectors from the reference FNV test suite (Noll's fnv/test_fnv.c).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn split_updates_equal_one_update() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let whole = fnv1a64(&data);
        for split in [0, 1, 17, 4096, 9999, 10_000] {
            let mut h = Fnv1a64::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(h.finish(), whole, "split at {split}");
            assert_eq!(h.len(), 10_000);
        }
        assert_eq!(Fnv1a64::new().hex(), "cbf29ce484222325");
    }
}
