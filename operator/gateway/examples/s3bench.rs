//! PUT and GET of one object in parts against an S3 endpoint; prints MiB/s.
//! Used by hack/bench-gateway.sh for the store directly and through the gateway.
//!
//! s3bench URL ACCESS_KEY SECRET_KEY BUCKET KEY [SIZE_MIB] [PART_MIB] [PARALLEL]

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use govcloud_gateway::upstream::{Endpoint, S3Client};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        bail!("usage: s3bench URL ACCESS_KEY SECRET_KEY BUCKET KEY [SIZE_MIB] [PART_MIB] [PARALLEL]");
    }
    let num = |i: usize, d: u64| -> Result<u64> {
        args.get(i)
            .map_or(Ok(d), |s| s.parse().with_context(|| format!("argument {i}: {s}")))
    };
    let (size_mib, part_mib, parallel) = (num(5, 1024)?, num(6, 8)?, num(7, 4)? as usize);
    let c = S3Client::new(Endpoint {
        url: args[0].clone(),
        region: "us-east-1".into(),
        access_key: args[1].clone(),
        secret_key: args[2].clone(),
    })?;
    let (bucket, key) = (args[3].clone(), args[4].clone());
    let part = (part_mib << 20) as usize;
    let parts = size_mib.div_ceil(part_mib) as u32;
    // One part's bytes (not compressible), sent for every part.
    let mut data = vec![0u8; part];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let data = Bytes::from(data);

    let t = Instant::now();
    let id = c.create_multipart(&bucket, &key, &BTreeMap::new(), None).await?;
    let mut etags: Vec<(u32, String)> = futures::stream::iter(1..=parts)
        .map(|n| {
            let (c, bucket, key, id, data) = (c.clone(), bucket.clone(), key.clone(), id.clone(), data.clone());
            async move {
                let len = data.len() as u64;
                let e = c
                    .upload_part(&bucket, &key, &id, n, reqwest::Body::from(data), len)
                    .await?;
                Ok::<_, anyhow::Error>((n, e.unwrap_or_default()))
            }
        })
        .buffer_unordered(parallel)
        .try_collect()
        .await?;
    etags.sort();
    c.complete_multipart(&bucket, &key, &id, &etags).await?;
    let put = t.elapsed().as_secs_f64();

    let total = parts as u64 * part as u64;
    let t = Instant::now();
    let got: u64 = futures::stream::iter(0..parts as u64)
        .map(|i| {
            let (c, bucket, key) = (c.clone(), bucket.clone(), key.clone());
            let first = i * part as u64;
            async move {
                let (_, resp) = c
                    .get_object(&bucket, &key, Some((first, first + part as u64 - 1)))
                    .await?;
                let mut n = 0u64;
                let mut s = resp.bytes_stream();
                while let Some(b) = s.next().await {
                    n += b?.len() as u64;
                }
                Ok::<_, anyhow::Error>(n)
            }
        })
        .buffer_unordered(parallel)
        .try_fold(0u64, |a, n| async move { Ok(a + n) })
        .await?;
    let get = t.elapsed().as_secs_f64();
    ensure!(got == total, "read {got} of {total} bytes");
    let _ = c.delete_object(&bucket, &key).await;
    let mib = total as f64 / (1 << 20) as f64;
    println!(
        "put_mib_s={:.1} get_mib_s={:.1} size_mib={mib:.0} part_mib={part_mib} parallel={parallel}",
        mib / put,
        mib / get
    );
    Ok(())
}
