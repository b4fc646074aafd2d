//! SM4-GCM sealing speed on one core, on every SM4 path this CPU has: the `sm4` crate's
//! portable one and the gateway's GFNI bulk paths (8 blocks on AVX2, 16 on AVX-512), in
//! 64 KiB segments as the gateway seals.
//!
//!     cargo run --release -p govcloud-gateway --example sm4_speed

use std::time::Instant;

use aes_gcm::AesGcm;
use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::consts::U12;
use govcloud_gateway::sm4_fast::{Path, Sm4};

fn speed(name: &str, cipher: &AesGcm<Sm4, U12>) {
    let mut segment = vec![0x5au8; 64 * 1024];
    let runs = 3;
    let mut rates = Vec::new();
    for _ in 0..runs {
        let n = 2048u32; // 128 MiB
        let start = Instant::now();
        for i in 0..n {
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&i.to_be_bytes());
            if cipher
                .encrypt_inout_detached(&nonce.into(), b"aad", segment.as_mut_slice().into())
                .is_err()
            {
                eprintln!("sealing failed");
                std::process::exit(1);
            }
        }
        rates.push(f64::from(n) * 64.0 / 1024.0 / start.elapsed().as_secs_f64());
    }
    let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rates.iter().copied().fold(0.0, f64::max);
    println!("{name}: SM4-GCM seal {lo:.0}–{hi:.0} MiB/s on one core ({runs} runs of 128 MiB)");
}

fn main() {
    let key = [7u8; 16];
    for path in Path::available() {
        if let Some(cipher) = Sm4::with_path(&key, path) {
            speed(&format!("{path:?}"), &AesGcm::<Sm4, U12>::from(cipher));
        }
    }
}
