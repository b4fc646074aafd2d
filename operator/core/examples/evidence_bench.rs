//! Benchmark of evidence report generation: builds, signs (SM2/SM3) and renders (JSON and
//! HTML) the reports of N realistic agencies (levels 1–4, mostly 3; a month of daily
//! backups with off-site copies, three systems, a drill each) from inputs already read,
//! on every core, and prints the time and the sizes. Collection from the API servers is
//! not included (docs/performance.md says how long it takes).
//!
//!     cargo run --release -p govcloud-core --example evidence_bench -- 2000

use std::time::Instant;

use govcloud_core::evidence::html::sign_report;
use govcloud_core::evidence::sign::{PemKeyProvider, PublicKey, SigningKeyProvider};
use govcloud_core::evidence::{build, html, sample};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let end: jiff::Timestamp = "2026-11-30T16:00:00Z".parse()?;
    let (private, public) = PemKeyProvider::generate()?;
    let key = PemKeyProvider::from_pem(&private, "bench")?;
    let public = PublicKey::from_pem(&public)?;
    let t = Instant::now();
    let inputs = (0..n)
        .map(|i| sample::inputs(&format!("a{i:05}"), [3, 3, 3, 2, 1, 4][i % 6], end))
        .collect::<Result<Vec<_>, _>>()?;
    let prepared = t.elapsed();
    let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1);
    let t = Instant::now();
    let chunks: Vec<_> = inputs.chunks(n.div_ceil(threads).max(1)).collect();
    let results: Vec<Vec<(usize, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let key: &dyn SigningKeyProvider = &key;
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|i| {
                            let r = build(i);
                            sign_report(&r, key).map(|(j, h)| (j.len(), h.len())).unwrap_or((0, 0))
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let generated = t.elapsed();
    let sizes: Vec<(usize, usize)> = results.into_iter().flatten().collect();
    let failed = sizes.iter().filter(|s| s.0 == 0).count();
    let max_json = sizes.iter().map(|s| s.0).max().unwrap_or(0);
    let max_html = sizes.iter().map(|s| s.1).max().unwrap_or(0);
    let mean_json = sizes.iter().map(|s| s.0).sum::<usize>() / sizes.len().max(1);
    let mean_html = sizes.iter().map(|s| s.1).sum::<usize>() / sizes.len().max(1);
    // One verification, as an assessor does it.
    let r = build(&inputs[0]);
    let (j, h) = sign_report(&r, &key)?;
    let t = Instant::now();
    html::verify_file(j.as_bytes(), &public)?;
    html::verify_file(h.as_bytes(), &public)?;
    let verify = t.elapsed();
    println!(
        "agencies={n} threads={threads} prepare={:.2}s generate+sign+render={:.2}s ({:.2} ms/report/thread) failed={failed} \
         json_max={max_json}B json_mean={mean_json}B html_max={max_html}B html_mean={mean_html}B verify_both={:.1}ms",
        prepared.as_secs_f64(),
        generated.as_secs_f64(),
        generated.as_secs_f64() * 1000.0 * threads as f64 / n.max(1) as f64,
        verify.as_secs_f64() * 1000.0
    );
    if failed > 0 {
        return Err(format!("{failed} reports failed to sign").into());
    }
    Ok(())
}
