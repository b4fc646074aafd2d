use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::AesGcm;
pub type Sm4Gcm = AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12>;
pub fn bench() {
    let c = Sm4Gcm::new_from_slice(&[7u8; 16]).unwrap();
    let mut buf = vec![1u8; 64 * 1024];
    let n = 256;
    let t = std::time::Instant::now();
    for i in 0..n {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&(i as u32).to_be_bytes());
        let _tag = c.encrypt_inout_detached(&nonce.into(), b"aad", buf.as_mut_slice().into()).unwrap();
    }
    let el = t.elapsed();
    println!("sm4-gcm: {:.1} MB/s", (n * 64 * 1024) as f64 / el.as_secs_f64() / 1e6);
    use sm4::cipher::{BlockCipherEncrypt};
    let c = sm4::Sm4::new_from_slice(&[7u8; 16]).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..n {
        let (blocks, _) = sm4::cipher::Block::<sm4::Sm4>::slice_as_chunks_mut(buf.as_mut_slice());
        c.encrypt_blocks(blocks);
    }
    let el = t.elapsed();
    println!("sm4 ecb: {:.1} MB/s", (n * 64 * 1024) as f64 / el.as_secs_f64() / 1e6);
}
#[test]
fn speed() { bench() }
