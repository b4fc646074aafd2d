//! The stored format of an object: SM4-GCM segments under a per-object key.
//!
//! An object's plaintext is cut into segments of [`SEGMENT`] bytes (the last may be shorter,
//! and an empty object is one empty segment). Each segment is stored as
//! `nonce (12) || ciphertext || tag (16)`, sealed with SM4-GCM under the object's own key:
//!
//! * the object key is `HMAC-SM3(data key, label || salt || bucket || key)` truncated to 128
//!   bits, with a random 128-bit salt chosen for every write, so every object version (and
//!   every multipart upload) has its own key, and stored bytes copied under another name do
//!   not decrypt;
//! * the nonce is random for every segment (96 bits, under a key that seals at most a few
//!   million segments), so a retried multipart part never reuses a nonce;
//! * the associated data binds the part number, the segment's index inside its part and
//!   whether it is the part's last segment: segments cannot be reordered, moved between
//!   parts, or cut off at a segment boundary without the tag check failing.
//!
//! Segments have a fixed stored size, so a plaintext byte range maps to a stored byte range
//! and a range read decrypts only the segments it touches.

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit};
use hmac::{Hmac, Mac};
use sm3::Sm3;
use zeroize::Zeroizing;

/// SM4 in Galois/Counter Mode with a 96-bit nonce (RFC 8998's `TLS_SM4_GCM_SM3` AEAD).
pub type Sm4Gcm = AesGcm<crate::sm4_fast::Sm4, U12>;

/// Plaintext bytes in one segment.
pub const SEGMENT: u64 = 64 * 1024;
/// Nonce bytes stored before each segment's ciphertext.
pub const NONCE: usize = 12;
/// Tag bytes stored after each segment's ciphertext.
pub const TAG: usize = 16;
/// Stored bytes added to each segment.
pub const OVERHEAD: u64 = (NONCE + TAG) as u64;
/// Stored bytes of a full segment.
pub const STORED_SEGMENT: u64 = SEGMENT + OVERHEAD;
/// Bytes of a data key and of a key-encryption key (SM4 keys are 128 bits).
pub const KEY_LEN: usize = 16;

/// Why a segment or a wrapped key did not decrypt.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("stored segment is {0} bytes, shorter than nonce and tag")]
    Short(usize),
    #[error("authentication failed (tampered, truncated, reordered or under another key)")]
    Auth,
    #[error("stored size {0} is not a valid encrypted layout")]
    Layout(u64),
}

/// Random bytes from the operating system.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS random source failing is not recoverable: no key or nonce may be made without it.
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    b
}

/// Number of segments of a plaintext of `plain` bytes (an empty plaintext is one segment).
pub fn segments(plain: u64) -> u64 {
    plain.div_ceil(SEGMENT).max(1)
}

/// Stored size of a plaintext of `plain` bytes sealed as one run of segments.
pub fn stored_len(plain: u64) -> u64 {
    let full = plain / SEGMENT;
    let rem = plain % SEGMENT;
    if plain == 0 {
        OVERHEAD
    } else if rem == 0 {
        full * STORED_SEGMENT
    } else {
        full * STORED_SEGMENT + rem + OVERHEAD
    }
}

/// Plaintext size of a run of segments of `stored` bytes; `None` when no plaintext has that
/// stored size (a tampered or foreign object).
pub fn plain_len(stored: u64) -> Option<u64> {
    let full = stored / STORED_SEGMENT;
    let rem = stored % STORED_SEGMENT;
    if rem == 0 {
        (full > 0).then_some(full * SEGMENT)
    } else if rem == OVERHEAD {
        // Only the empty object ends in an empty segment.
        (full == 0).then_some(0)
    } else if rem > OVERHEAD {
        Some(full * SEGMENT + rem - OVERHEAD)
    } else {
        None
    }
}

fn hmac_sm3(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut m = <Hmac<Sm3> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        // Length-prefixed so that ("ab","c") and ("a","bc") differ.
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// HMAC-SM3 of `data` under `key` (used for manifests and key identifiers).
pub fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    hmac_sm3(key, &[data])
}

/// SM3 digest as lowercase hex.
pub fn sm3_hex(data: &[u8]) -> String {
    use sm3::Digest;
    hex(&Sm3::digest(data))
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

/// Parses hex (either case); `None` for anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn cipher(key: &[u8]) -> Sm4Gcm {
    // Keys are always KEY_LEN bytes here (checked where they are read).
    Sm4Gcm::new_from_slice(key).expect("SM4 key is 16 bytes")
}

fn segment_aad(part: u32, index: u64, last: bool) -> [u8; 25] {
    let mut aad = [0u8; 25];
    aad[..12].copy_from_slice(b"govcloud-gw1");
    aad[12..16].copy_from_slice(&part.to_be_bytes());
    aad[16..24].copy_from_slice(&index.to_be_bytes());
    aad[24] = u8::from(last);
    aad
}

/// The keys of one object version.
pub struct ObjectCipher {
    aead: Sm4Gcm,
    mac_key: Zeroizing<[u8; 32]>,
}

impl ObjectCipher {
    /// Derives the object's keys from the data key, the write's salt and the object's name.
    pub fn new(data_key: &[u8; KEY_LEN], salt: &[u8; 16], bucket: &str, key: &str) -> Self {
        let enc = Zeroizing::new(hmac_sm3(
            data_key,
            &[b"govcloud-gw1 object key", salt, bucket.as_bytes(), key.as_bytes()],
        ));
        let mac_key = Zeroizing::new(hmac_sm3(
            data_key,
            &[b"govcloud-gw1 manifest key", salt, bucket.as_bytes(), key.as_bytes()],
        ));
        ObjectCipher {
            aead: cipher(&enc[..KEY_LEN]),
            mac_key,
        }
    }

    /// Appends the sealed segment (`nonce || ciphertext || tag`) of `plain` to `out` (tests;
    /// the gateway seals in place).
    #[cfg(test)]
    pub fn seal(&self, part: u32, index: u64, last: bool, plain: &[u8], out: &mut Vec<u8>) {
        let mut segment = Vec::with_capacity(NONCE + plain.len() + TAG);
        segment.resize(NONCE, 0);
        segment.extend_from_slice(plain);
        self.seal_in_place(part, index, last, &mut segment);
        out.extend_from_slice(&segment);
    }

    /// Seals a segment where it lies: `segment` holds [`NONCE`] bytes of room followed by
    /// the plaintext, and becomes the stored segment (`nonce || ciphertext || tag`). The
    /// gateway collects plaintext this way so that no byte is copied to be encrypted.
    pub fn seal_in_place(&self, part: u32, index: u64, last: bool, segment: &mut Vec<u8>) {
        if segment.len() < NONCE {
            // Not a segment with room for its nonce: a bug of the caller; make it one.
            let mut fixed = vec![0u8; NONCE];
            fixed.append(segment);
            *segment = fixed;
        }
        let nonce: [u8; NONCE] = random();
        segment[..NONCE].copy_from_slice(&nonce);
        // Encryption fails only for plaintexts over 64 GiB; segments are 64 KiB.
        let tag = self
            .aead
            .encrypt_inout_detached(
                &nonce.into(),
                &segment_aad(part, index, last),
                (&mut segment[NONCE..]).into(),
            )
            .expect("segment is within the SM4-GCM length limit");
        segment.extend_from_slice(&tag);
    }

    /// Decrypts one stored segment and appends its plaintext to `out` (tests; the gateway
    /// opens in place).
    #[cfg(test)]
    pub fn open(&self, part: u32, index: u64, last: bool, stored: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let mut segment = stored.to_vec();
        let plain = self.open_in_place(part, index, last, &mut segment)?;
        out.extend_from_slice(&segment[plain]);
        Ok(())
    }

    /// Decrypts one stored segment where it lies; the plaintext is the returned range of
    /// `segment` (between the nonce and the tag). On failure the segment is left as it was
    /// only in length: its bytes must not be used.
    pub fn open_in_place(
        &self,
        part: u32,
        index: u64,
        last: bool,
        segment: &mut [u8],
    ) -> Result<std::ops::Range<usize>, CryptoError> {
        let len = segment.len();
        if len < NONCE + TAG {
            return Err(CryptoError::Short(len));
        }
        let (head, tail) = segment.split_at_mut(len - TAG);
        let (nonce, ct) = head.split_at_mut(NONCE);
        let nonce: [u8; NONCE] = (&*nonce).try_into().map_err(|_| CryptoError::Auth)?;
        let tag: [u8; TAG] = (&*tail).try_into().map_err(|_| CryptoError::Auth)?;
        self.aead
            .decrypt_inout_detached(&nonce.into(), &segment_aad(part, index, last), ct.into(), &tag.into())
            .map_err(|_| CryptoError::Auth)?;
        Ok(NONCE..len - TAG)
    }

    /// MAC of a manifest's canonical bytes.
    pub fn manifest_mac(&self, data: &[u8]) -> [u8; 32] {
        mac(&self.mac_key[..], data)
    }
}

/// Seals a data key under a key-encryption key: `nonce || ciphertext || tag`, with `aad`
/// naming the agency, the data key and the key-encryption key.
pub fn wrap_key(kek: &[u8; KEY_LEN], key: &[u8], aad: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE] = random();
    let mut out = Vec::with_capacity(NONCE + key.len() + TAG);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(key);
    let tag = cipher(kek)
        .encrypt_inout_detached(&nonce.into(), aad, (&mut out[NONCE..]).into())
        .expect("a key is within the SM4-GCM length limit");
    out.extend_from_slice(&tag);
    out
}

/// Opens a key sealed by [`wrap_key`].
pub fn unwrap_key(kek: &[u8; KEY_LEN], wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if wrapped.len() < NONCE + TAG {
        return Err(CryptoError::Short(wrapped.len()));
    }
    let (nonce, rest) = wrapped.split_at(NONCE);
    let (ct, tag) = rest.split_at(rest.len() - TAG);
    let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| CryptoError::Auth)?;
    let tag: [u8; TAG] = tag.try_into().map_err(|_| CryptoError::Auth)?;
    let mut out = Zeroizing::new(ct.to_vec());
    cipher(kek)
        .decrypt_inout_detached(&nonce.into(), aad, out.as_mut_slice().into(), &tag.into())
        .map_err(|_| CryptoError::Auth)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm4::cipher::{BlockCipherDecrypt, BlockCipherEncrypt};

    fn h(s: &str) -> Vec<u8> {
        unhex(s).unwrap_or_default()
    }

    /// GB/T 32907-2016 (SM4), Appendix A, example 1: one block.
    #[test]
    fn sm4_gbt32907_example_1() {
        let key = h("0123456789abcdeffedcba9876543210");
        let c = sm4::Sm4::new_from_slice(&key).unwrap_or_else(|_| panic!("key length"));
        let mut block = sm4::cipher::Block::<sm4::Sm4>::default();
        block.copy_from_slice(&key);
        c.encrypt_block(&mut block);
        assert_eq!(hex(&block), "681edf34d206965e86b3e94f536e4246");
        c.decrypt_block(&mut block);
        assert_eq!(hex(&block), "0123456789abcdeffedcba9876543210");
    }

    /// GB/T 32907-2016 (SM4), Appendix A, example 2: the same block encrypted 1,000,000 times.
    #[test]
    fn sm4_gbt32907_example_2_million_rounds() {
        let key = h("0123456789abcdeffedcba9876543210");
        let c = sm4::Sm4::new_from_slice(&key).unwrap_or_else(|_| panic!("key length"));
        let mut block = sm4::cipher::Block::<sm4::Sm4>::default();
        block.copy_from_slice(&key);
        for _ in 0..1_000_000 {
            c.encrypt_block(&mut block);
        }
        assert_eq!(hex(&block), "595298c7c6fd271f0402f804c33d3f66");
    }

    /// GB/T 32905-2016 (SM3), Appendix A, examples 1 and 2.
    #[test]
    fn sm3_gbt32905_examples() {
        assert_eq!(
            sm3_hex(b"abc"),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_eq!(
            sm3_hex("abcd".repeat(16).as_bytes()),
            "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
        );
    }

    /// RFC 8998, Appendix A.1: the SM4-GCM example (the mode this gateway uses).
    #[test]
    fn sm4_gcm_rfc8998_example() {
        let key = h("0123456789ABCDEFFEDCBA9876543210");
        let nonce: [u8; 12] = h("00001234567800000000ABCD").try_into().unwrap_or_default();
        let aad = h("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
        let mut buf = h("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD\
                         EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA");
        let tag = cipher(&key)
            .encrypt_inout_detached(&nonce.into(), &aad, buf.as_mut_slice().into())
            .unwrap_or_else(|_| panic!("encrypt"));
        assert_eq!(
            hex(&buf),
            "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735\
             d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d"
        );
        assert_eq!(hex(&tag), "83de3541e4c2b58177e065a9bf7b62ec");
    }

    /// RFC 2104-style HMAC over SM3, checked against an independent value: the HMAC-SM3 of
    /// "abc" under key "key" computed from the definition with the SM3 vectors above.
    #[test]
    fn hmac_sm3_matches_its_definition() {
        use sm3::Digest;
        let key = b"key";
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(key);
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sm3::digest([ipad.as_slice(), b"abc"].concat());
        let outer = Sm3::digest([opad.as_slice(), inner.as_slice()].concat());
        let mut m = <Hmac<Sm3> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| panic!("key"));
        m.update(b"abc");
        assert_eq!(hex(&m.finalize().into_bytes()), hex(&outer));
    }

    #[test]
    fn layout_round_trips() {
        for plain in [
            0,
            1,
            100,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            8 << 20,
            (8 << 20) + 5,
        ] {
            let stored = stored_len(plain);
            assert_eq!(plain_len(stored), Some(plain), "plain {plain} stored {stored}");
        }
        // Sizes no writer produces.
        for stored in [0, 1, OVERHEAD - 1, STORED_SEGMENT + OVERHEAD, STORED_SEGMENT + 3] {
            assert_eq!(plain_len(stored), None, "stored {stored}");
        }
    }

    fn oc(salt: u8, key: &str) -> ObjectCipher {
        ObjectCipher::new(&[9u8; KEY_LEN], &[salt; 16], "backups", key)
    }

    #[test]
    fn segment_round_trip_and_every_binding() {
        let c = oc(1, "a/x");
        let mut s = Vec::new();
        c.seal(0, 3, false, b"secret data", &mut s);
        assert!(!s.windows(6).any(|w| w == b"secret"), "ciphertext holds the plaintext");
        let mut out = Vec::new();
        c.open(0, 3, false, &s, &mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, b"secret data");
        // Another index (reordering), part, last flag (truncation), salt, name: all refused.
        let mut out = Vec::new();
        assert_eq!(c.open(0, 4, false, &s, &mut out), Err(CryptoError::Auth));
        assert_eq!(c.open(1, 3, false, &s, &mut out), Err(CryptoError::Auth));
        assert_eq!(c.open(0, 3, true, &s, &mut out), Err(CryptoError::Auth));
        assert_eq!(oc(2, "a/x").open(0, 3, false, &s, &mut out), Err(CryptoError::Auth));
        assert_eq!(oc(1, "a/y").open(0, 3, false, &s, &mut out), Err(CryptoError::Auth));
        assert!(out.is_empty(), "no plaintext leaks out of a failed open");
        // One flipped bit anywhere.
        for i in [0, NONCE, s.len() - 1] {
            let mut t = s.clone();
            t[i] ^= 1;
            assert_eq!(c.open(0, 3, false, &t, &mut out), Err(CryptoError::Auth), "bit {i}");
        }
        assert_eq!(c.open(0, 3, false, &s[..10], &mut out), Err(CryptoError::Short(10)));
    }

    #[test]
    fn nonces_differ_for_the_same_segment() {
        let c = oc(1, "a/x");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c.seal(1, 0, true, b"same", &mut a);
        c.seal(1, 0, true, b"same", &mut b);
        assert_ne!(a[..NONCE], b[..NONCE]);
        assert_ne!(a, b);
    }

    #[test]
    fn key_wrap_binds_its_context() {
        let kek = [5u8; KEY_LEN];
        let w = wrap_key(&kek, &[7u8; KEY_LEN], b"agency-a/dek1/kek1");
        let k = unwrap_key(&kek, &w, b"agency-a/dek1/kek1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k.as_slice(), &[7u8; KEY_LEN]);
        assert_eq!(unwrap_key(&kek, &w, b"agency-b/dek1/kek1"), Err(CryptoError::Auth));
        assert_eq!(
            unwrap_key(&[6u8; KEY_LEN], &w, b"agency-a/dek1/kek1"),
            Err(CryptoError::Auth)
        );
    }
}
