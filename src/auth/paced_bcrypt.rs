//! bcrypt computed in slices, with a pause between them.
//!
//! A cost-10 hash is about 60 ms of CPU in one piece. On a core the proxy
//! keeps busy, the scheduler lets a hashing thread it has picked run until
//! its next look at the core, a timer tick (4 ms at HZ=250) or a wakeup,
//! whatever time slice the thread asked for: that wait is what a login
//! storm added to the proxied requests' p99 (docs/PERFORMANCE.md, "Logins
//! under load"). Here the hashing thread gives the core back itself every
//! [`ROUNDS_PER_SLICE`] rounds of bcrypt's key schedule (about 0.2 ms), so a
//! proxied request waits at most that long behind it; when nothing else
//! wants the core, the pause returns at once.
//!
//! Only the expensive part is done here, with the `blowfish` primitives
//! the `bcrypt` crate itself uses; the `bcrypt` crate still parses stored
//! hashes, and the tests check that both compute the same hashes. Hashes
//! are `$2b$` (Portainer's Go code writes `$2a$`; both verify).

use std::str::FromStr;

use base64::engine::general_purpose::NO_PAD;
use base64::engine::GeneralPurpose;
use base64::{alphabet, Engine as _};
use blowfish::Blowfish;
use subtle::ConstantTimeEq;

/// Rounds of the key schedule between two pauses: one round (two key
/// expansions) is about 57 µs on the machines of docs/PERFORMANCE.md, so a
/// slice is about 0.2 ms and a cost-10 hash makes 256 pauses (one
/// `sched_yield` each: well under 1% of the hash).
pub const ROUNDS_PER_SLICE: u32 = 4;

const MIN_COST: u32 = 4;
const MAX_COST: u32 = 31;
/// bcrypt reads at most 72 bytes of key (the password and its NUL).
const MAX_KEY: usize = 72;

const BASE_64: GeneralPurpose = GeneralPurpose::new(&alphabet::BCRYPT, NO_PAD);

/// A new `$2b$` hash of `password` with a random salt. Passwords of 72 bytes
/// or more are refused (as `bcrypt::non_truncating_hash` does) rather than
/// silently cut.
pub fn hash(password: &[u8], cost: u32, pause: &mut impl FnMut()) -> Result<String, bcrypt::BcryptError> {
    if !(MIN_COST..=MAX_COST).contains(&cost) {
        return Err(bcrypt::BcryptError::CostNotAllowed(cost));
    }
    if password.len() >= MAX_KEY {
        return Err(bcrypt::BcryptError::Truncation(password.len() + 1));
    }
    let salt: [u8; 16] = rand::random();
    let mut key = password.to_vec();
    key.push(0);
    let out = raw(cost, &salt, &key, pause);
    Ok(format!("$2b${cost:02}${}{}", BASE_64.encode(salt), BASE_64.encode(out)))
}

/// Whether `password` matches `hash` (`$2a$`, `$2b$`, `$2x$` or `$2y$`, as
/// `bcrypt::verify` reads them: a password of 72 bytes or more is cut at
/// 72). A malformed hash is a mismatch. The comparison is constant-time.
pub fn verify(password: &[u8], hash: &str, pause: &mut impl FnMut()) -> bool {
    // The crate checks the shape (60 ASCII bytes, prefix, cost digits,
    // base64 salt and hash).
    let Ok(parts) = bcrypt::HashParts::from_str(hash) else { return false };
    let cost = parts.get_cost();
    if !(MIN_COST..=MAX_COST).contains(&cost) {
        return false;
    }
    let mut expected = [0u8; 23];
    if BASE_64.decode_slice(&hash[29..], &mut expected).is_err() {
        return false;
    }
    let cut = password.len().min(MAX_KEY);
    let mut key = password[..cut].to_vec();
    if key.len() < MAX_KEY {
        key.push(0);
    }
    raw(cost, &parts.get_salt_raw(), &key, pause).ct_eq(&expected).into()
}

/// bcrypt's EksBlowfish setup and the 64 encryptions of
/// "OrpheanBeholderScryDoubt"; the first 23 of its 24 bytes, which is what
/// a hash string carries.
fn raw(cost: u32, salt: &[u8; 16], key: &[u8], pause: &mut impl FnMut()) -> [u8; 23] {
    let mut state = Blowfish::bc_init_state();
    state.salted_expand_key(salt, key);
    for round in 1..=1u32 << cost {
        state.bc_expand_key(key);
        state.bc_expand_key(salt);
        if round % ROUNDS_PER_SLICE == 0 {
            pause();
        }
    }
    let mut ctext: [u32; 6] = [0x4f72_7068, 0x6561_6e42, 0x6568_6f6c, 0x6465_7253, 0x6372_7944, 0x6f75_6274];
    for pair in ctext.chunks_exact_mut(2) {
        for _ in 0..64 {
            let [l, r] = state.bc_encrypt([pair[0], pair[1]]);
            pair[0] = l;
            pair[1] = r;
        }
    }
    let mut out = [0u8; 24];
    for (bytes, word) in out.chunks_exact_mut(4).zip(ctext) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    let mut first = [0u8; 23];
    first.copy_from_slice(&out[..23]);
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_pause() -> impl FnMut() {
        || {}
    }

    /// The same bytes as the `bcrypt` crate for passwords of every length
    /// around the 72-byte limit, empty and non-ASCII ones, several costs.
    #[test]
    fn hashes_are_the_bcrypt_crates_both_ways() {
        let mut passwords: Vec<Vec<u8>> = vec![b"".to_vec(), "pässwörd ✓".as_bytes().to_vec(), vec![0xff; 5]];
        passwords.extend((1..=75).map(|n| (0..n).map(|i| b'a' + (i % 26) as u8).collect()));
        for (i, pw) in passwords.iter().enumerate() {
            let cost = 4 + (i % 3) as u32;
            // Ours verified by the crate.
            match hash(pw, cost, &mut no_pause()) {
                Ok(h) => {
                    assert!(h.starts_with(&format!("$2b${cost:02}$")) && h.len() == 60, "{h}");
                    assert!(bcrypt::verify(pw, &h).unwrap(), "the crate verifies our hash of {pw:?}");
                    assert!(!bcrypt::verify(b"other", &h).unwrap());
                }
                Err(bcrypt::BcryptError::Truncation(_)) => assert!(pw.len() >= 72),
                Err(e) => panic!("{e}"),
            }
            // The crate's verified by ours, whatever its prefix.
            let salt: [u8; 16] = rand::random();
            let theirs = bcrypt::hash_with_salt(pw, cost, salt).unwrap();
            for version in [bcrypt::Version::TwoA, bcrypt::Version::TwoB, bcrypt::Version::TwoY] {
                let h = theirs.format_for_version(version);
                assert!(verify(pw, &h, &mut no_pause()), "{h} for {pw:?}");
                assert!(!verify(b"other", &h, &mut no_pause()));
            }
        }
    }

    #[test]
    fn a_known_hash_and_malformed_ones() {
        // jBCrypt's test vector for "abc" (cost 6).
        let known = "$2a$06$If6bvum7DFjUnE9p2uDeDu0YHzrHM6tf.iqN8.yx.jNN1ILEf7h0i";
        assert!(verify(b"abc", known, &mut no_pause()));
        assert!(!verify(b"abd", known, &mut no_pause()));
        for bad in [
            "",
            "not a hash",
            "$2a$06$If6bvum7DFjUnE9p2uDeDu0YHzrHM6tf.iqN8.yx.jNN1ILEf7h0",
            "$3a$06$If6bvum7DFjUnE9p2uDeDu0YHzrHM6tf.iqN8.yx.jNN1ILEf7h0i",
            "$2a$03$If6bvum7DFjUnE9p2uDeDu0YHzrHM6tf.iqN8.yx.jNN1ILEf7h0i",
            "$2a$06$If6bvum7DFjUnE9p2uDeDu0YHzrHM6tf.iqN8.yx.jNN1ILEf7h!i",
        ] {
            assert!(!verify(b"abc", bad, &mut no_pause()), "{bad}");
        }
        assert!(matches!(hash(b"x", 3, &mut no_pause()), Err(bcrypt::BcryptError::CostNotAllowed(3))));
    }

    /// The pause comes every few rounds: 2^cost / ROUNDS_PER_SLICE times.
    #[test]
    fn the_work_is_cut_into_slices() {
        let mut pauses = 0;
        let h = hash(b"secret", 6, &mut || pauses += 1).unwrap();
        assert_eq!(pauses, (1 << 6) / ROUNDS_PER_SLICE);
        pauses = 0;
        assert!(verify(b"secret", &h, &mut || pauses += 1));
        assert_eq!(pauses, (1 << 6) / ROUNDS_PER_SLICE);
    }
}
