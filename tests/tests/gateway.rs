//! The encrypting S3 gateway (`govcloud-s3-gateway`, operator/gateway/) as a program between
//! S3 clients and a real object store (s3s-fs, built by hack/build-velero.sh), both on
//! random 127.0.0.1 ports and stopped by PID. No cluster is needed.
//!
//! Proves: objects round-trip (whole, by range, by multipart upload) while the store holds
//! no plaintext; one agency's credentials get 403 on every object of another (GET, HEAD,
//! DELETE, PUT, LIST, multipart, and names that climb out of its prefix with `..`); a
//! revoked or wrong key-encryption key fails with a clear message; a key rotation keeps
//! every object readable without rewriting it.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail, ensure};
use bytes::Bytes;
use govcloud_gateway::keys::FileKeyProvider;
use govcloud_gateway::upstream::{Endpoint, S3Client, UpstreamError};
use govcloud_tests::*;
use reqwest::Body;

const BUCKET: &str = "backups";
/// Bytes that must never appear in the store.
const MARKER: &[u8] = b"GOVCLOUD-PLAINTEXT-MARKER-7f3a9c";

/// A store and a gateway with agencies `agency-a` and `agency-b` (the harness's [`Gateway`]).
struct Bed(Gateway);

impl std::ops::Deref for Bed {
    type Target = Gateway;
    fn deref(&self) -> &Gateway {
        &self.0
    }
}

impl Bed {
    fn start(name: &str) -> Result<Bed> {
        Ok(Bed(Gateway::start(&unique(name), &["agency-a", "agency-b"])?))
    }

    fn client(&self, access_key: &str, secret_key: &str) -> Result<S3Client> {
        Ok(S3Client::new(Endpoint {
            url: self.endpoint(),
            region: "us-east-1".into(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        })?)
    }

    fn a(&self) -> Result<S3Client> {
        self.client("AGENCYA", "agency-a-secret")
    }

    fn b(&self) -> Result<S3Client> {
        self.client("AGENCYB", "agency-b-secret")
    }

    /// The store itself, bypassing the gateway.
    fn raw(&self) -> Result<S3Client> {
        Ok(S3Client::new(Endpoint {
            url: self.store.endpoint(),
            region: "us-east-1".into(),
            access_key: S3_ACCESS_KEY.into(),
            secret_key: S3_SECRET_KEY.into(),
        })?)
    }
}

/// `len` bytes with the marker every 4 KiB.
fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let mut at = 0;
    while at + MARKER.len() <= len {
        v[at..at + MARKER.len()].copy_from_slice(MARKER);
        at += 4096;
    }
    v
}

async fn put(c: &S3Client, key: &str, data: &[u8]) -> Result<(), UpstreamError> {
    c.put_object(
        BUCKET,
        key,
        Body::from(data.to_vec()),
        data.len() as u64,
        &BTreeMap::new(),
        None,
    )
    .await
    .map(|_| ())
}

async fn get_range(c: &S3Client, key: &str, a: u64, b: u64) -> Result<Vec<u8>> {
    let (_, resp) = c.get_object(BUCKET, key, Some((a, b))).await?;
    Ok(resp.bytes().await?.to_vec())
}

async fn multipart(c: &S3Client, key: &str, parts: &[&[u8]]) -> Result<(), UpstreamError> {
    let id = c.create_multipart(BUCKET, key, &BTreeMap::new(), None).await?;
    let mut done = Vec::new();
    // Upload out of order, as concurrent uploaders do.
    for (i, p) in parts.iter().enumerate().rev() {
        let n = i as u32 + 1;
        let etag = c
            .upload_part(BUCKET, key, &id, n, Body::from(p.to_vec()), p.len() as u64)
            .await?;
        done.push((n, etag.unwrap_or_default()));
    }
    done.sort();
    c.complete_multipart(BUCKET, key, &id, &done).await.map(|_| ())
}

/// Every file under `dir` (the store's data) that contains `needle`.
fn status_of<T>(r: &Result<T, UpstreamError>) -> Option<(u16, String)> {
    match r {
        Err(e) => Some((e.status().map_or(0, |s| s.as_u16()), e.code().unwrap_or("").to_string())),
        Ok(_) => None,
    }
}

fn assert_denied<T>(what: &str, r: Result<T, UpstreamError>) -> Result<()> {
    match status_of(&r) {
        Some((403, code)) if code == "AccessDenied" => Ok(()),
        // A HEAD answer has no body to carry the code.
        Some((403, code)) if code == "Forbidden" && what.contains("HEAD") => Ok(()),
        Some((s, code)) => bail!("{what}: expected 403 AccessDenied, got {s} {code}: {:?}", r.err()),
        None => bail!("{what}: expected 403 AccessDenied, but it succeeded"),
    }
}

#[tokio::test]
async fn objects_round_trip_encrypted_with_ranges_and_multipart() -> Result<()> {
    let bed = Bed::start("gw-roundtrip")?;
    let a = bed.a()?;

    // Small, empty, and a few segments long.
    let small = payload(5000, 1);
    put(&a, "agency-a/small", &small).await?;
    ensure!(
        a.get_bytes(BUCKET, "agency-a/small").await? == small,
        "small object differs"
    );
    put(&a, "agency-a/empty", b"").await?;
    ensure!(
        a.get_bytes(BUCKET, "agency-a/empty").await?.is_empty(),
        "empty object is not empty"
    );
    let big = payload(3 * 65536 + 1234, 2);
    put(&a, "agency-a/big", &big).await?;
    ensure!(a.get_bytes(BUCKET, "agency-a/big").await? == big, "big object differs");
    let head = a
        .head_object(BUCKET, "agency-a/big")
        .await?
        .ok_or_else(|| anyhow!("no head"))?;
    ensure!(
        head.size == big.len() as u64,
        "HEAD size {} != {}",
        head.size,
        big.len()
    );

    // Ranges: inside one segment, across segment boundaries, to the end, past the end.
    for (x, y) in [
        (0u64, 0u64),
        (10, 99),
        (65530, 65545),
        (65536, 131071),
        (100, 200_000),
        (196_000, 999_999),
    ] {
        let got = get_range(&a, "agency-a/big", x, y).await?;
        let end = (y as usize + 1).min(big.len());
        ensure!(
            got == big[x as usize..end],
            "range {x}-{y}: {} bytes, wrong content",
            got.len()
        );
    }

    // Multipart: parts of 5 MiB, 5 MiB and 1 MiB + 7, uploaded out of order.
    let p1 = payload(5 << 20, 3);
    let p2 = payload(5 << 20, 4);
    let p3 = payload((1 << 20) + 7, 5);
    multipart(&a, "agency-a/mp", &[&p1, &p2, &p3]).await?;
    let whole = [p1.as_slice(), &p2, &p3].concat();
    ensure!(
        a.get_bytes(BUCKET, "agency-a/mp").await? == whole,
        "multipart object differs"
    );
    let five = 5u64 << 20;
    for (x, y) in [(five - 10, five + 10), (2 * five - 1, 2 * five + 65536), (0, 3)] {
        let got = get_range(&a, "agency-a/mp", x, y).await?;
        ensure!(got == whole[x as usize..=y as usize], "multipart range {x}-{y} differs");
    }
    let head = a
        .head_object(BUCKET, "agency-a/mp")
        .await?
        .ok_or_else(|| anyhow!("no head"))?;
    ensure!(head.size == whole.len() as u64, "multipart HEAD size {}", head.size);
    let listed = a.list_all(BUCKET, "agency-a/").await?;
    let sizes: BTreeMap<_, _> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
    ensure!(
        sizes.get("agency-a/mp") == Some(&(whole.len() as u64))
            && sizes.get("agency-a/big") == Some(&(big.len() as u64)),
        "listed sizes are not the plaintext sizes: {sizes:?}"
    );

    // A part that is not a multiple of 64 KiB (but the last) is refused with a reason.
    let bad = multipart(&a, "agency-a/bad", &[&payload((5 << 20) + 1, 6), &p3]).await;
    let msg = format!("{:?}", bad.err());
    ensure!(
        msg.contains("InvalidPart") && msg.contains("64 KiB"),
        "unaligned part: {msg}"
    );

    // The store holds no plaintext: not in any object, part, record or metadata file.
    let hits = files_containing(&bed.store.dir, MARKER);
    ensure!(hits.is_empty(), "plaintext marker found in the store: {hits:?}");
    // And it holds the objects (so the check above looked at something).
    let raw = bed.raw()?;
    let stored = raw
        .head_object(BUCKET, "agency-a/big")
        .await?
        .ok_or_else(|| anyhow!("big not in the store"))?;
    ensure!(
        stored.size > big.len() as u64,
        "stored size {} is not ciphertext + tags",
        stored.size
    );

    // A multipart object's manifest (its parts under an HMAC-SM3) altered in the store.
    multipart(&a, "agency-a/mp2", &[&p1, b"0123456789"]).await?;
    let manifests = raw.list_all(BUCKET, ".govcloud-gateway/manifests/").await?;
    ensure!(manifests.len() == 2, "one manifest per multipart object: {manifests:?}");
    let mut altered = 0;
    for m in &manifests {
        let text = String::from_utf8(raw.get_bytes(BUCKET, &m.key).await?.to_vec())?;
        // Move one whole segment from part 1 to part 2: the same stored size, so only the
        // manifest's MAC can tell (the segments would decrypt until the moved one).
        let forged = text
            .replace("[2,10]", &format!("[2,{}]", 65536 + 10))
            .replace(&format!("[1,{}]", 5 << 20), &format!("[1,{}]", (5 << 20) - 65536));
        if text.contains("[2,10]") {
            raw.put_bytes(BUCKET, &m.key, Bytes::from(forged)).await?;
            altered += 1;
        }
    }
    ensure!(altered == 1, "found mp2's manifest to alter ({altered})");
    let e = a
        .get_object(BUCKET, "agency-a/mp2", None)
        .await
        .err()
        .ok_or_else(|| anyhow!("an object with a forged manifest was served"))?;
    ensure!(e.to_string().contains("manifest"), "forged manifest: {e}");

    // One flipped bit in the stored object: reading through the gateway fails, loudly.
    let path = bed.store.dir.join(BUCKET).join("agency-a").join("small");
    let mut bytes = std::fs::read(&path)?;
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes)?;
    let e = a
        .get_object(BUCKET, "agency-a/small", None)
        .await
        .err()
        .ok_or_else(|| anyhow!("a tampered object was served"))?;
    ensure!(e.to_string().contains("integrity check"), "tampered object: {e}");

    // Truncation at a segment boundary is refused too.
    let path = bed.store.dir.join(BUCKET).join("agency-a").join("big");
    let bytes = std::fs::read(&path)?;
    std::fs::write(&path, &bytes[..2 * (65536 + 28)])?;
    let r = a.get_bytes(BUCKET, "agency-a/big").await;
    ensure!(
        r.as_ref().is_err_and(|e| e.to_string().contains("integrity check")),
        "a truncated object: {:?}",
        r.map(|b| b.len())
    );
    // Tampering beyond the first batch (1 MiB) cuts the body off: never served whole.
    let path = bed.store.dir.join(BUCKET).join("agency-a").join("mp");
    let mut bytes = std::fs::read(&path)?;
    let at = bytes.len() - 100;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes)?;
    let r = match a.get_object(BUCKET, "agency-a/mp", None).await {
        Ok((_, resp)) => resp.bytes().await.map(|b| b.len()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    ensure!(r.is_err(), "an object altered in its last segment was served: {r:?}");
    Ok(())
}

#[tokio::test]
async fn another_agency_gets_403_on_every_object() -> Result<()> {
    let bed = Bed::start("gw-isolation")?;
    let (a, b) = (bed.a()?, bed.b()?);
    let data = payload(70_000, 7);
    put(&a, "agency-a/backups/b1/data", &data).await?;
    multipart(&a, "agency-a/kopia/pack", &[&payload(5 << 20, 8), &payload(100, 9)]).await?;
    put(&b, "agency-b/own", b"b's own object").await?;

    let names = ["agency-a/backups/b1/data", "agency-a/kopia/pack", "agency-a/new-object"];
    for k in names {
        assert_denied(&format!("B GET {k}"), b.get_object(BUCKET, k, None).await.map(|_| ()))?;
        assert_denied(
            &format!("B GET range {k}"),
            b.get_object(BUCKET, k, Some((0, 9))).await.map(|_| ()),
        )?;
        assert_denied(&format!("B HEAD {k}"), b.head_object(BUCKET, k).await)?;
        assert_denied(&format!("B DELETE {k}"), b.delete_object(BUCKET, k).await)?;
        assert_denied(&format!("B PUT {k}"), put(&b, k, b"overwrite").await)?;
        assert_denied(
            &format!("B multipart {k}"),
            b.create_multipart(BUCKET, k, &BTreeMap::new(), None).await,
        )?;
    }
    for p in [
        "agency-a/",
        "agency-a/backups/",
        "",
        "agency-",
        "agency-a",
        ".govcloud-gateway/",
    ] {
        assert_denied(
            &format!("B LIST {p:?}"),
            b.list_objects_v2(BUCKET, p, None, None, None, None).await,
        )?;
    }
    // Names that start in B's prefix and climb into A's.
    let climbing = b.clone().encoding_slashes();
    for k in [
        "agency-b/../agency-a/backups/b1/data",
        "agency-b/./../agency-a/kopia/pack",
    ] {
        assert_denied(
            &format!("B GET {k}"),
            climbing.get_object(BUCKET, k, None).await.map(|_| ()),
        )?;
        assert_denied(&format!("B DELETE {k}"), climbing.delete_object(BUCKET, k).await)?;
        assert_denied(&format!("B PUT {k}"), put(&climbing, k, b"x").await)?;
    }
    assert_denied(
        "B LIST climbing",
        climbing
            .list_objects_v2(BUCKET, "agency-b/../agency-a/", None, None, None, None)
            .await,
    )?;
    // The gateway's own records are no agency's.
    assert_denied(
        "A GET key records",
        a.get_object(BUCKET, ".govcloud-gateway/keys/agency-a/x.json", None)
            .await
            .map(|_| ()),
    )?;
    // Unknown and wrong credentials.
    let r = bed
        .client("NOBODY", "x")?
        .get_object(BUCKET, "agency-a/kopia/pack", None)
        .await;
    ensure!(
        status_of(&r).is_some_and(|(s, _)| s == 403),
        "unknown key: {:?}",
        status_of(&r)
    );
    let r = bed
        .client("AGENCYA", "agency-b-secret")?
        .get_object(BUCKET, "agency-a/kopia/pack", None)
        .await;
    ensure!(
        status_of(&r).is_some_and(|(s, _)| s == 403),
        "wrong secret: {:?}",
        status_of(&r)
    );

    // A's objects are intact, and B still works in its own prefix but sees none of A's names.
    ensure!(
        a.get_bytes(BUCKET, "agency-a/backups/b1/data").await? == data,
        "A's object changed"
    );
    ensure!(
        a.head_object(BUCKET, "agency-a/kopia/pack").await?.is_some(),
        "A's multipart object is gone"
    );
    ensure!(
        a.head_object(BUCKET, "agency-a/new-object").await?.is_none(),
        "B created an object in A's prefix"
    );
    let listed = b.list_all(BUCKET, "agency-b/").await?;
    ensure!(
        listed.iter().all(|o| o.key.starts_with("agency-b/")) && listed.len() == 1,
        "B lists {listed:?}"
    );
    // And A's data keys differ from B's: B's data key cannot open A's objects even in the store.
    let keys = bed.raw()?.list_all(BUCKET, ".govcloud-gateway/keys/").await?;
    ensure!(
        keys.iter().any(|k| k.key.contains("/agency-a/")) && keys.iter().any(|k| k.key.contains("/agency-b/")),
        "per-agency data keys: {keys:?}"
    );
    Ok(())
}

#[tokio::test]
async fn rotation_keeps_objects_readable_and_revoked_or_wrong_keys_fail_clearly() -> Result<()> {
    let bed = Bed::start("gw-keys")?;
    let a = bed.a()?;
    let single = payload(200_000, 10);
    put(&a, "agency-a/single", &single).await?;
    let p1 = payload(5 << 20, 11);
    multipart(&a, "agency-a/multi", &[&p1, b"tail"]).await?;
    let whole = [p1.as_slice(), b"tail"].concat();
    let raw = bed.raw()?;
    let stored_before = raw.get_bytes(BUCKET, "agency-a/single").await?;

    // Rotation: a new KEK becomes current, data keys are rewrapped, the old KEK is removed.
    let kek = bed.dir.join("kek");
    FileKeyProvider::generate(&kek, "k2", true)?;
    let out = bed.rotate(&[])?;
    ensure!(out.contains("agency-a: 1 data key(s) rewrapped"), "rotate said: {out}");
    std::fs::remove_file(kek.join("kek.k1"))?;
    ensure!(
        a.get_bytes(BUCKET, "agency-a/single").await? == single,
        "single object after rotation"
    );
    ensure!(
        a.get_bytes(BUCKET, "agency-a/multi").await? == whole,
        "multipart object after rotation"
    );
    ensure!(
        raw.get_bytes(BUCKET, "agency-a/single").await? == stored_before,
        "rotation rewrote the object's data"
    );
    let records = raw.list_all(BUCKET, ".govcloud-gateway/keys/agency-a/").await?;
    for r in &records {
        let text = String::from_utf8(raw.get_bytes(BUCKET, &r.key).await?.to_vec())?;
        ensure!(
            text.contains("\"kek\": \"k2\""),
            "record {} not under k2: {text}",
            r.key
        );
    }
    // A second rotation has nothing to do; --new-data-key starts a new data key for new writes.
    let out = bed.rotate(&["--new-data-key"])?;
    ensure!(
        out.contains("0 data key(s) rewrapped, 1 already") && out.contains("new data key"),
        "{out}"
    );
    put(&a, "agency-a/after", b"written under the new data key").await?;
    ensure!(
        a.get_bytes(BUCKET, "agency-a/single").await? == single,
        "old data key still opens old objects"
    );

    // Revoked: the KEK is gone from the Secret. A restore fails with a message saying so.
    let k2 = std::fs::read_to_string(kek.join("kek.k2"))?;
    std::fs::remove_file(kek.join("kek.k2"))?;
    let e = a
        .get_object(BUCKET, "agency-a/single", None)
        .await
        .err()
        .ok_or_else(|| anyhow!("read with a revoked KEK succeeded"))?;
    let msg = e.to_string();
    ensure!(
        e.status().map(|s| s.as_u16()) == Some(403)
            && e.code() == Some("KeyUnavailable")
            && msg.contains("revoked")
            && msg.contains("k2"),
        "revoked KEK: {msg}"
    );
    let e = a
        .head_object(BUCKET, "agency-a/multi")
        .await
        .err()
        .ok_or_else(|| anyhow!("HEAD with a revoked KEK succeeded"))?;
    ensure!(
        e.status().map(|s| s.as_u16()) == Some(403),
        "HEAD with revoked KEK: {e}"
    );

    // Wrong: a different key under the same id (the wrong Secret mounted), also after a restart.
    FileKeyProvider::generate(&bed.dir.join("other"), "k2", false)?;
    std::fs::copy(bed.dir.join("other").join("kek.k2"), kek.join("kek.k2"))?;
    bed.stop();
    bed.resume()?;
    // A new client: the old one's pooled connections went with the old process.
    let a = bed.a()?;
    let e = a
        .get_object(BUCKET, "agency-a/single", None)
        .await
        .err()
        .ok_or_else(|| anyhow!("read with a wrong KEK succeeded"))?;
    let msg = e.to_string();
    ensure!(
        msg.contains("does not unwrap") && msg.contains("wrong Secret"),
        "wrong KEK: {msg}"
    );

    // The right key back: everything reads again.
    std::fs::write(kek.join("kek.k2"), k2)?;
    ensure!(
        a.get_bytes(BUCKET, "agency-a/single").await? == single,
        "after restoring the KEK"
    );
    ensure!(
        a.get_bytes(BUCKET, "agency-a/multi").await? == whole,
        "multipart after restoring the KEK"
    );
    Ok(())
}
