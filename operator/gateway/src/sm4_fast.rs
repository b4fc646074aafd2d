//! SM4 (GB/T 32907-2016) for the gateway's bulk encryption: eight blocks at a time with the
//! x86-64 GFNI and AVX2 instructions where the CPU has them, the RustCrypto `sm4` crate
//! otherwise (and for single blocks).
//!
//! Why this exists: the `sm4` crate is a portable one-block-at-a-time implementation (about
//! 94 MiB/s on one core of the project's machine), which made SM4 the gateway's bound. SM4's
//! S-box is an affine map, an inversion in GF(2⁸) and another affine map; the inversion in
//! SM4's field is the inversion in AES's field seen through a field isomorphism, so the whole
//! S-box is `post · inv_AES(pre · x + 0x3e) + 0xd3` for two 8×8 bit matrices — exactly what the
//! GFNI instructions `GF2P8AFFINEQB` and `GF2P8AFFINEINVQB` compute on 32 bytes at once (the
//! technique of the Linux kernel's and libgcrypt's SM4 GFNI code; the matrices below are
//! derived by `hack/sm4-gfni-matrices.py` and checked against the S-box for all 256 inputs).
//! The linear layer L is rotations of 32-bit lanes. Everything is constant-time: no table
//! lookups on secret data in the vector path.
//!
//! Correctness is not taken on trust: the unit tests compare every path with the `sm4` crate
//! on random keys and blocks, and with GB/T 32907's own vectors; the key schedule is the
//! standard's (and compared with the crate's through the ciphertexts).

use sm4::cipher::{
    AlgorithmName, Block, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, InOut, Key,
    KeyInit, KeySizeUser, ParBlocks, ParBlocksSizeUser,
    consts::{U1, U8, U16},
};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// GB/T 32907's S-box.
const SBOX: [u8; 256] = [
    0xd6, 0x90, 0xe9, 0xfe, 0xcc, 0xe1, 0x3d, 0xb7, 0x16, 0xb6, 0x14, 0xc2, 0x28, 0xfb, 0x2c, 0x05, 0x2b, 0x67, 0x9a,
    0x76, 0x2a, 0xbe, 0x04, 0xc3, 0xaa, 0x44, 0x13, 0x26, 0x49, 0x86, 0x06, 0x99, 0x9c, 0x42, 0x50, 0xf4, 0x91, 0xef,
    0x98, 0x7a, 0x33, 0x54, 0x0b, 0x43, 0xed, 0xcf, 0xac, 0x62, 0xe4, 0xb3, 0x1c, 0xa9, 0xc9, 0x08, 0xe8, 0x95, 0x80,
    0xdf, 0x94, 0xfa, 0x75, 0x8f, 0x3f, 0xa6, 0x47, 0x07, 0xa7, 0xfc, 0xf3, 0x73, 0x17, 0xba, 0x83, 0x59, 0x3c, 0x19,
    0xe6, 0x85, 0x4f, 0xa8, 0x68, 0x6b, 0x81, 0xb2, 0x71, 0x64, 0xda, 0x8b, 0xf8, 0xeb, 0x0f, 0x4b, 0x70, 0x56, 0x9d,
    0x35, 0x1e, 0x24, 0x0e, 0x5e, 0x63, 0x58, 0xd1, 0xa2, 0x25, 0x22, 0x7c, 0x3b, 0x01, 0x21, 0x78, 0x87, 0xd4, 0x00,
    0x46, 0x57, 0x9f, 0xd3, 0x27, 0x52, 0x4c, 0x36, 0x02, 0xe7, 0xa0, 0xc4, 0xc8, 0x9e, 0xea, 0xbf, 0x8a, 0xd2, 0x40,
    0xc7, 0x38, 0xb5, 0xa3, 0xf7, 0xf2, 0xce, 0xf9, 0x61, 0x15, 0xa1, 0xe0, 0xae, 0x5d, 0xa4, 0x9b, 0x34, 0x1a, 0x55,
    0xad, 0x93, 0x32, 0x30, 0xf5, 0x8c, 0xb1, 0xe3, 0x1d, 0xf6, 0xe2, 0x2e, 0x82, 0x66, 0xca, 0x60, 0xc0, 0x29, 0x23,
    0xab, 0x0d, 0x53, 0x4e, 0x6f, 0xd5, 0xdb, 0x37, 0x45, 0xde, 0xfd, 0x8e, 0x2f, 0x03, 0xff, 0x6a, 0x72, 0x6d, 0x6c,
    0x5b, 0x51, 0x8d, 0x1b, 0xaf, 0x92, 0xbb, 0xdd, 0xbc, 0x7f, 0x11, 0xd9, 0x5c, 0x41, 0x1f, 0x10, 0x5a, 0xd8, 0x0a,
    0xc1, 0x31, 0x88, 0xa5, 0xcd, 0x7b, 0xbd, 0x2d, 0x74, 0xd0, 0x12, 0xb8, 0xe5, 0xb4, 0xb0, 0x89, 0x69, 0x97, 0x4a,
    0x0c, 0x96, 0x77, 0x7e, 0x65, 0xb9, 0xf1, 0x09, 0xc5, 0x6e, 0xc6, 0x84, 0x18, 0xf0, 0x7d, 0xec, 0x3a, 0xdc, 0x4d,
    0x20, 0x79, 0xee, 0x5f, 0x3e, 0xd7, 0xcb, 0x39, 0x48,
];

/// The system parameter FK.
const FK: [u32; 4] = [0xa3b1_bac6, 0x56aa_3350, 0x677d_9197, 0xb270_22dc];

/// The fixed parameters CK: byte j of CK[i] is (4i + j) · 7 mod 256.
const CK: [u32; 32] = {
    let mut ck = [0u32; 32];
    let mut i = 0;
    while i < 32 {
        let mut j = 0;
        while j < 4 {
            ck[i] = (ck[i] << 8) | (((4 * i + j) * 7) % 256) as u32;
            j += 1;
        }
        i += 1;
    }
    ck
};

fn tau(a: u32) -> u32 {
    let b = a.to_be_bytes();
    u32::from_be_bytes([
        SBOX[usize::from(b[0])],
        SBOX[usize::from(b[1])],
        SBOX[usize::from(b[2])],
        SBOX[usize::from(b[3])],
    ])
}

/// The key schedule (GB/T 32907 §7.3): 32 round keys.
fn round_keys(key: &[u8; 16]) -> [u32; 32] {
    let word = |i: usize| u32::from_be_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]);
    let mut k = [word(0) ^ FK[0], word(1) ^ FK[1], word(2) ^ FK[2], word(3) ^ FK[3]];
    let mut rk = [0u32; 32];
    for (i, ck) in CK.iter().enumerate() {
        let b = tau(k[(i + 1) % 4] ^ k[(i + 2) % 4] ^ k[(i + 3) % 4] ^ ck);
        k[i % 4] ^= b ^ b.rotate_left(13) ^ b.rotate_left(23);
        rk[i] = k[i % 4];
    }
    rk
}

/// SM4 encryption with a bulk path of eight blocks where the CPU allows it. Implements the
/// RustCrypto block-cipher traits, so `aes_gcm::AesGcm<Sm4, U12>` is SM4-GCM.
#[derive(Clone)]
pub struct Sm4 {
    rk: [u32; 32],
    soft: sm4::Sm4,
    path: Path,
}

/// How bulk blocks are encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// One block at a time, the `sm4` crate.
    Portable,
    /// Eight blocks at a time: GFNI on 256-bit AVX2 registers.
    Gfni8,
    /// Sixteen blocks at a time: GFNI on 512-bit AVX-512 registers.
    Gfni16,
}

impl Path {
    /// The fastest path this CPU has.
    pub fn best() -> Path {
        Self::available().last().copied().unwrap_or(Path::Portable)
    }

    /// Every path this CPU can run, slowest first.
    pub fn available() -> Vec<Path> {
        let mut paths = vec![Path::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("gfni") && std::is_x86_feature_detected!("avx2") {
                paths.push(Path::Gfni8);
            }
            if std::is_x86_feature_detected!("gfni")
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
            {
                paths.push(Path::Gfni16);
            }
        }
        paths
    }
}

impl Sm4 {
    /// The cipher on a given path, if this CPU has it (for tests and comparisons).
    pub fn with_path(key: &[u8; 16], path: Path) -> Option<Self> {
        let mut c = Self::new(&(*key).into());
        c.path = path;
        Path::available().contains(&path).then_some(c)
    }

    /// The path this cipher takes.
    pub fn path(&self) -> Path {
        self.path
    }
}

impl KeySizeUser for Sm4 {
    type KeySize = U16;
}

impl KeyInit for Sm4 {
    fn new(key: &Key<Self>) -> Self {
        let bytes: [u8; 16] = (*key).into();
        let rk = round_keys(&bytes);
        Sm4 {
            rk,
            soft: sm4::Sm4::new(key),
            path: Path::best(),
        }
    }
}

impl BlockSizeUser for Sm4 {
    type BlockSize = U16;
}

impl BlockCipherEncrypt for Sm4 {
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = Self::BlockSize>) {
        match self.path {
            Path::Gfni16 => f.call(&Gfni16 {
                rk: &self.rk,
                soft: &self.soft,
            }),
            Path::Gfni8 => f.call(&Gfni8 {
                rk: &self.rk,
                soft: &self.soft,
            }),
            Path::Portable => f.call(&Portable(&self.soft)),
        }
    }
}

impl fmt::Debug for Sm4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sm4 { .. }")
    }
}

impl AlgorithmName for Sm4 {
    fn write_alg_name(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sm4")
    }
}

impl Drop for Sm4 {
    fn drop(&mut self) {
        self.rk.zeroize();
    }
}

impl ZeroizeOnDrop for Sm4 {}

/// One block at a time, through the `sm4` crate.
struct Portable<'a>(&'a sm4::Sm4);

impl BlockSizeUser for Portable<'_> {
    type BlockSize = U16;
}

impl ParBlocksSizeUser for Portable<'_> {
    type ParBlocksSize = U1;
}

impl BlockCipherEncBackend for Portable<'_> {
    fn encrypt_block(&self, block: InOut<'_, '_, Block<Self>>) {
        self.0.encrypt_block_inout(block);
    }
}

/// A bulk backend: `$size` blocks (`$bytes` bytes) at a time through `x86::$f`, single
/// blocks through the `sm4` crate.
macro_rules! gfni_backend {
    ($name:ident, $size:ty, $bytes:literal, $f:ident) => {
        struct $name<'a> {
            rk: &'a [u32; 32],
            soft: &'a sm4::Sm4,
        }

        impl BlockSizeUser for $name<'_> {
            type BlockSize = U16;
        }

        impl ParBlocksSizeUser for $name<'_> {
            type ParBlocksSize = $size;
        }

        impl BlockCipherEncBackend for $name<'_> {
            fn encrypt_block(&self, block: InOut<'_, '_, Block<Self>>) {
                self.soft.encrypt_block_inout(block);
            }

            fn encrypt_par_blocks(&self, mut blocks: InOut<'_, '_, ParBlocks<Self>>) {
                let mut input = [0u8; $bytes];
                for (k, block) in blocks.get_in().iter().enumerate() {
                    input[16 * k..16 * k + 16].copy_from_slice(block);
                }
                let mut output = [0u8; $bytes];
                #[cfg(target_arch = "x86_64")]
                // SAFETY: this backend is only chosen on a path that `Path::available()` found
                // this CPU to have.
                unsafe {
                    x86::$f(self.rk, &input, &mut output)
                };
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("the GFNI backends exist on x86-64 only");
                for (k, block) in blocks.get_out().iter_mut().enumerate() {
                    block.copy_from_slice(&output[16 * k..16 * k + 16]);
                }
            }
        }
    };
}

// Eight blocks with GFNI on AVX2; sixteen on AVX-512 (words transposed in registers).
gfni_backend!(Gfni8, U8, 128, encrypt8);
gfni_backend!(Gfni16, U16, 256, encrypt16);

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The S-box as two affine maps around AES's inversion (see the module's documentation).
    const PRE: i64 = 0x4c28_7db9_1a22_505d;
    const PRE_C: i32 = 0x3e;
    const POST: i64 = 0xf3ab_34a9_74a6_b589u64 as i64;
    const POST_C: i32 = 0xd3;

    /// Eight blocks (128 bytes, in order) encrypted from `input` into `output`; lane k of
    /// register j holds word j of block k.
    #[target_feature(enable = "avx2,gfni")]
    pub(super) fn encrypt8(rk: &[u32; 32], input: &[u8; 128], output: &mut [u8; 128]) {
        let mut x = [[0u32; 8]; 4];
        for (k, block) in input.chunks_exact(16).enumerate() {
            for (j, word) in x.iter_mut().enumerate() {
                word[k] = u32::from_be_bytes([block[4 * j], block[4 * j + 1], block[4 * j + 2], block[4 * j + 3]]);
            }
        }
        // SAFETY: each `[u32; 8]` is 32 bytes; unaligned loads and stores.
        let load = |w: &[u32; 8]| unsafe { _mm256_loadu_si256(w.as_ptr().cast()) };
        let (mut x0, mut x1, mut x2, mut x3) = (load(&x[0]), load(&x[1]), load(&x[2]), load(&x[3]));
        let pre = _mm256_set1_epi64x(PRE);
        let post = _mm256_set1_epi64x(POST);
        // Byte shuffles that rotate each 32-bit lane left by 8, 16 and 24 bits.
        let rol8 = _mm256_setr_epi8(
            3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14, 3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14,
        );
        let rol16 = _mm256_setr_epi8(
            2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
        );
        let rol24 = _mm256_setr_epi8(
            1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12, 1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12,
        );
        // T(a) = L(τ(a)), L(b) = b ⊕ b⋘2 ⊕ b⋘10 ⊕ b⋘18 ⊕ b⋘24
        //                     = b ⊕ b⋘24 ⊕ (b ⊕ b⋘8 ⊕ b⋘16)⋘2.
        let t = |a: __m256i| {
            let b = _mm256_gf2p8affineinv_epi64_epi8::<POST_C>(_mm256_gf2p8affine_epi64_epi8::<PRE_C>(a, pre), post);
            let c = _mm256_xor_si256(
                b,
                _mm256_xor_si256(_mm256_shuffle_epi8(b, rol8), _mm256_shuffle_epi8(b, rol16)),
            );
            let c2 = _mm256_or_si256(_mm256_slli_epi32::<2>(c), _mm256_srli_epi32::<30>(c));
            _mm256_xor_si256(_mm256_xor_si256(b, _mm256_shuffle_epi8(b, rol24)), c2)
        };
        // One round: x ⊕= T(a ⊕ b ⊕ c ⊕ k).
        let round = |x: __m256i, a: __m256i, b: __m256i, c: __m256i, k: u32| {
            let i = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, _mm256_set1_epi32(k as i32)));
            _mm256_xor_si256(x, t(i))
        };
        for r in rk.chunks_exact(4) {
            x0 = round(x0, x1, x2, x3, r[0]);
            x1 = round(x1, x2, x3, x0, r[1]);
            x2 = round(x2, x3, x0, x1, r[2]);
            x3 = round(x3, x0, x1, x2, r[3]);
        }
        // SAFETY: as for the loads.
        let store = |w: &mut [u32; 8], v: __m256i| unsafe { _mm256_storeu_si256(w.as_mut_ptr().cast(), v) };
        store(&mut x[0], x0);
        store(&mut x[1], x1);
        store(&mut x[2], x2);
        store(&mut x[3], x3);
        // The output is (X35, X34, X33, X32): words in reverse order.
        for (k, block) in output.chunks_exact_mut(16).enumerate() {
            for j in 0..4 {
                block[4 * j..4 * j + 4].copy_from_slice(&x[3 - j][k].to_be_bytes());
            }
        }
    }
    /// Sixteen blocks (256 bytes, in order) encrypted from `input` into `output`. The words
    /// are transposed in registers: after a 4×4 transpose of 32-bit words inside each
    /// 128-bit lane of the four loaded registers, register `w` holds word `w` of every
    /// block (in an order the inverse transpose undoes), so a round is lane-parallel.
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    pub(super) fn encrypt16(rk: &[u32; 32], input: &[u8; 256], output: &mut [u8; 256]) {
        // Each 32-bit word is big-endian in the block.
        let bswap = _mm512_broadcast_i32x4(_mm_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12));
        // SAFETY: `input` is 256 bytes: four unaligned 64-byte loads.
        let load =
            |k: usize| _mm512_shuffle_epi8(unsafe { _mm512_loadu_si512(input.as_ptr().add(64 * k).cast()) }, bswap);
        let (r0, r1, r2, r3) = (load(0), load(1), load(2), load(3));
        // 4×4 transpose of 32-bit words in each 128-bit lane (its own inverse).
        let transpose = |a: __m512i, b: __m512i, c: __m512i, d: __m512i| {
            let (ab_lo, ab_hi) = (_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
            let (cd_lo, cd_hi) = (_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
            (
                _mm512_unpacklo_epi64(ab_lo, cd_lo),
                _mm512_unpackhi_epi64(ab_lo, cd_lo),
                _mm512_unpacklo_epi64(ab_hi, cd_hi),
                _mm512_unpackhi_epi64(ab_hi, cd_hi),
            )
        };
        let (mut x0, mut x1, mut x2, mut x3) = transpose(r0, r1, r2, r3);
        let pre = _mm512_set1_epi64(PRE);
        let post = _mm512_set1_epi64(POST);
        let rol8 = _mm512_broadcast_i32x4(_mm_setr_epi8(3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14));
        let rol16 = _mm512_broadcast_i32x4(_mm_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
        // One round: x ⊕= L(τ(a ⊕ b ⊕ c ⊕ k)), with L(s) = s ⊕ s⋘24 ⊕ (s ⊕ s⋘8 ⊕ s⋘16)⋘2;
        // three-input XORs are one ternary-logic instruction (truth table 0x96).
        let round = |x: __m512i, a: __m512i, b: __m512i, c: __m512i, k: u32| {
            let i = _mm512_xor_si512(_mm512_ternarylogic_epi32::<0x96>(a, b, c), _mm512_set1_epi32(k as i32));
            let s = _mm512_gf2p8affineinv_epi64_epi8::<POST_C>(_mm512_gf2p8affine_epi64_epi8::<PRE_C>(i, pre), post);
            let m = _mm512_ternarylogic_epi32::<0x96>(s, _mm512_shuffle_epi8(s, rol8), _mm512_shuffle_epi8(s, rol16));
            _mm512_xor_si512(
                _mm512_ternarylogic_epi32::<0x96>(x, s, _mm512_rol_epi32::<24>(s)),
                _mm512_rol_epi32::<2>(m),
            )
        };
        for r in rk.chunks_exact(4) {
            x0 = round(x0, x1, x2, x3, r[0]);
            x1 = round(x1, x2, x3, x0, r[1]);
            x2 = round(x2, x3, x0, x1, r[2]);
            x3 = round(x3, x0, x1, x2, r[3]);
        }
        // The output is (X35, X34, X33, X32): words in reverse order.
        let (o0, o1, o2, o3) = transpose(x3, x2, x1, x0);
        for (k, v) in [o0, o1, o2, o3].into_iter().enumerate() {
            // SAFETY: `output` is 256 bytes: four unaligned 64-byte stores.
            unsafe { _mm512_storeu_si512(output.as_mut_ptr().add(64 * k).cast(), _mm512_shuffle_epi8(v, bswap)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm4::cipher::BlockCipherEncrypt;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    fn random() -> [u8; 16] {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).unwrap_or_else(|e| panic!("random source: {e}"));
        b
    }

    fn blocks(n: usize, seed: u8) -> Vec<Block<Sm4>> {
        (0..n)
            .map(|i| {
                let mut b = Block::<Sm4>::default();
                let r: [u8; 16] = random();
                for (j, v) in b.iter_mut().enumerate() {
                    *v = r[j] ^ seed ^ (i as u8);
                }
                b
            })
            .collect()
    }

    #[test]
    fn gb_t_32907_example_1() {
        // GB/T 32907-2016 Appendix A, example 1: one encryption.
        let key: [u8; 16] = hex("0123456789abcdeffedcba9876543210").try_into().unwrap_or([0; 16]);
        for cipher in Path::available().into_iter().filter_map(|p| Sm4::with_path(&key, p)) {
            // Forty copies: bulk batches of every width and a tail.
            let mut bs = vec![Block::<Sm4>::try_from(&key[..]).unwrap_or_default(); 40];
            cipher.encrypt_blocks(&mut bs);
            for b in &bs {
                assert_eq!(b.to_vec(), hex("681edf34d206965e86b3e94f536e4246"));
            }
        }
    }

    #[test]
    fn gb_t_32907_example_2_a_million_times() {
        // Example 2: the same plaintext encrypted 1,000,000 times under the same key, on
        // every bulk path of this CPU (a batch of its width at once, so the bulk path is what
        // is checked).
        let key: [u8; 16] = hex("0123456789abcdeffedcba9876543210").try_into().unwrap_or([0; 16]);
        for (path, width) in [(Path::Gfni8, 8), (Path::Gfni16, 16)] {
            let Some(cipher) = Sm4::with_path(&key, path) else {
                continue;
            };
            let mut bs = vec![Block::<Sm4>::try_from(&key[..]).unwrap_or_default(); width];
            for _ in 0..1_000_000 {
                cipher.encrypt_blocks(&mut bs);
            }
            for b in &bs {
                assert_eq!(b.to_vec(), hex("595298c7c6fd271f0402f804c33d3f66"), "{path:?}");
            }
        }
    }

    #[test]
    fn every_path_matches_the_sm4_crate() {
        for round in 0..200u32 {
            let key: [u8; 16] = random();
            let reference = sm4::Sm4::new(&key.into());
            let n = (round as usize % 53) + 1; // bulk batches and tails of every length
            let input = blocks(n, round as u8);
            let mut want = input.clone();
            reference.encrypt_blocks(&mut want);
            for cipher in Path::available().into_iter().filter_map(|p| Sm4::with_path(&key, p)) {
                let mut got = input.clone();
                cipher.encrypt_blocks(&mut got);
                assert_eq!(got, want, "{:?}: key {key:02x?}, {n} blocks", cipher.path());
            }
        }
    }

    #[test]
    fn the_key_schedule_is_the_standards() {
        // GB/T 32907 example 1's first and last round keys.
        let key: [u8; 16] = hex("0123456789abcdeffedcba9876543210").try_into().unwrap_or([0; 16]);
        let rk = round_keys(&key);
        assert_eq!(rk[0], 0xf121_86f9);
        assert_eq!(rk[31], 0x9124_a012);
    }

    #[test]
    fn a_new_cipher_takes_the_fastest_path_of_this_cpu() {
        let key = [9u8; 16];
        assert_eq!(Sm4::new(&key.into()).path(), Path::best());
        assert!(Sm4::with_path(&key, Path::Portable).is_some());
    }
}
