//! The S3 service: authenticates each agency, keeps it inside its own bucket prefix,
//! encrypts what it writes and decrypts what it reads. The store sees only ciphertext,
//! wrapped keys and the layout records below.
//!
//! Stored next to each object (as `x-amz-meta-*` on the object itself):
//! `gw-format` (1), `gw-dek` (the data key id), `gw-salt` (hex), and `gw-parts` for an
//! object written by a multipart upload. A multipart object also has a manifest,
//! `.govcloud-gateway/manifests/<sm3(bucket/key)>/<salt>.json`, listing its parts and their
//! plaintext sizes under an HMAC-SM3 of the object's key, written before the upload is
//! completed. An upload in progress has a record `.govcloud-gateway/uploads/<sm3(id)>.json`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::config::Agency;
use crate::crypto::{self, CryptoError, KEY_LEN, NONCE, ObjectCipher, SEGMENT, STORED_SEGMENT};
use crate::keys::{KeyError, Keyring, RESERVED_PREFIX};
use crate::upstream::{ObjectHead, S3Client, UpstreamError};

const META_FORMAT: &str = "gw-format";
const META_DEK: &str = "gw-dek";
const META_SALT: &str = "gw-salt";
const META_PARTS: &str = "gw-parts";
/// Plaintext segments sealed or opened in one batch (1 MiB).
const BATCH: usize = 16;
/// Sealed or opened segments in flight between the client and the store (4 MiB).
const CHANNEL: usize = 64;

/// The gateway.
pub struct Gateway {
    store: S3Client,
    keys: Arc<Keyring>,
    by_access_key: HashMap<String, Agency>,
    manifests: Mutex<HashMap<String, Arc<Manifest>>>,
}

/// Parts and plaintext sizes of a multipart object, under the object's MAC key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    pub dek: String,
    pub salt: String,
    /// `(part number, plaintext bytes)` in order.
    pub parts: Vec<(u32, u64)>,
    pub mac: String,
}

impl Manifest {
    fn canonical(bucket: &str, key: &str, dek: &str, salt: &str, parts: &[(u32, u64)]) -> Vec<u8> {
        let parts: Vec<String> = parts.iter().map(|(n, l)| format!("{n}:{l}")).collect();
        format!(
            "govcloud-gw1 manifest\0{bucket}\0{key}\0{dek}\0{salt}\0{}",
            parts.join(",")
        )
        .into_bytes()
    }
}

/// A multipart upload in progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct UploadRecord {
    agency: String,
    bucket: String,
    key: String,
    dek: String,
    salt: String,
}

/// Where each segment of an object is: parts in order, plaintext sizes.
#[derive(Clone, Debug)]
struct Layout {
    /// `(part number, plaintext bytes, first global segment)`; part 0 for a single PUT.
    parts: Vec<(u32, u64, u64)>,
    plain: u64,
    stored: u64,
}

impl Layout {
    fn new(parts: &[(u32, u64)]) -> Layout {
        let mut out = Vec::with_capacity(parts.len());
        let (mut seg, mut plain, mut stored) = (0, 0, 0);
        for &(n, len) in parts {
            out.push((n, len, seg));
            seg += crypto::segments(len);
            plain += len;
            stored += crypto::stored_len(len);
        }
        Layout {
            parts: out,
            plain,
            stored,
        }
    }

    /// `(part number, index in part, last in part)` of global segment `g`.
    fn locate(&self, g: u64) -> Option<(u32, u64, bool)> {
        let i = self.parts.partition_point(|&(_, _, first)| first <= g).checked_sub(1)?;
        let (n, len, first) = self.parts[i];
        let count = crypto::segments(len);
        let idx = g - first;
        (idx < count).then_some((n, idx, idx + 1 == count))
    }
}

/// The error an agency sees for a name outside its prefix.
fn denied(agency: &Agency, what: &str) -> S3Error {
    s3_error!(
        AccessDenied,
        "agency {} may only reach {}/{}*; {what} is outside it",
        agency.name,
        agency.bucket,
        agency.prefix
    )
}

/// Whether `name` is under `prefix` as a store resolves it: a store that maps keys to
/// files (s3s-fs, MinIO) resolves `agency-b/../agency-a/x` to `agency-a/x`, so names with
/// `.` or `..` segments are never inside any prefix.
pub fn inside(name: &str, prefix: &str) -> bool {
    name.starts_with(prefix) && !name.split(['/', '\\']).any(|seg| seg == "." || seg == "..")
}

fn store_error(e: UpstreamError) -> S3Error {
    match e {
        UpstreamError::Status { status, code, message } => {
            let code = S3ErrorCode::from_bytes(code.as_bytes()).unwrap_or(S3ErrorCode::InternalError);
            let mut err = S3Error::with_message(code, message);
            err.set_status_code(status);
            err
        }
        other => {
            warn!(error = %other, "object store unreachable");
            s3_error!(ServiceUnavailable, "the gateway cannot reach its object store: {other}")
        }
    }
}

fn key_error(e: KeyError) -> S3Error {
    match e {
        KeyError::Store(e) => store_error(e),
        e @ (KeyError::NotHeld { .. } | KeyError::WrongKey { .. } | KeyError::MissingDataKey { .. }) => {
            warn!(error = %e, "data key unavailable");
            let mut err = S3Error::with_message(
                S3ErrorCode::Custom("KeyUnavailable".into()),
                format!("the object's data key is unavailable: {e}"),
            );
            err.set_status_code(reqwest::StatusCode::FORBIDDEN);
            err
        }
        e => {
            warn!(error = %e, "key provider failed");
            s3_error!(InternalError, "key provider: {e}")
        }
    }
}

fn integrity(bucket: &str, key: &str, e: impl std::fmt::Display) -> S3Error {
    warn!(bucket, key, error = %e, "stored object failed authentication");
    s3_error!(
        InternalError,
        "object {bucket}/{key} failed its integrity check ({e}): it was altered or truncated in the store"
    )
}

/// A byte stream fed by a channel (the response body of a GET, the request body to the store).
struct ChanStream(mpsc::Receiver<Result<Bytes, io::Error>>);

impl Stream for ChanStream {
    type Item = Result<Bytes, io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

struct PlainSegment {
    index: u64,
    last: bool,
    /// [`NONCE`] bytes of room, then the plaintext (see [`ObjectCipher::seal_in_place`]).
    data: Vec<u8>,
}

/// An empty segment buffer with room for the nonce in front and the tag behind.
fn segment_buffer() -> Vec<u8> {
    let mut b = Vec::with_capacity(STORED_SEGMENT as usize);
    b.resize(NONCE, 0);
    b
}

/// Seals a batch of segments where they lie; the stored segments in order. Runs on the
/// task that calls it (about a millisecond per batch with the bulk SM4 path): handing batches
/// to blocking threads cost more in thread switches than it gained on two cores.
fn seal_batch(cipher: &ObjectCipher, part: u32, segs: Vec<PlainSegment>) -> Vec<Bytes> {
    segs.into_iter()
        .map(|mut s| {
            cipher.seal_in_place(part, s.index, s.last, &mut s.data);
            Bytes::from(s.data)
        })
        .collect()
}

/// Reads `plain_len` bytes of `body`, seals them as segments of part `part`, and sends the
/// sealed bytes to `tx`.
async fn seal_stream(
    mut body: StreamingBlob,
    cipher: Arc<ObjectCipher>,
    part: u32,
    plain_len: u64,
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
) {
    let total = crypto::segments(plain_len);
    let mut seen: u64 = 0;
    let mut index: u64 = 0;
    let mut cur: Vec<u8> = segment_buffer();
    let mut batch: Vec<PlainSegment> = Vec::with_capacity(BATCH);
    let mut inflight: Option<tokio::task::JoinHandle<Vec<Bytes>>> = None;

    async fn flush(
        inflight: &mut Option<tokio::task::JoinHandle<Vec<Bytes>>>,
        tx: &mpsc::Sender<Result<Bytes, io::Error>>,
    ) -> bool {
        if let Some(h) = inflight.take() {
            let Ok(out) = h.await else { return false };
            for b in out {
                if tx.send(Ok(b)).await.is_err() {
                    return false;
                }
            }
        }
        true
    }
    let fail = |tx: &mpsc::Sender<Result<Bytes, io::Error>>, m: String| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(Err(io::Error::other(m))).await;
        }
    };

    while let Some(chunk) = body.next().await {
        let mut chunk = match chunk {
            Ok(c) => c,
            Err(e) => return fail(&tx, format!("reading the request body: {e}")).await,
        };
        seen += chunk.len() as u64;
        if seen > plain_len {
            return fail(
                &tx,
                format!("request body is longer than its Content-Length {plain_len}"),
            )
            .await;
        }
        while !chunk.is_empty() {
            let take = (NONCE + SEGMENT as usize - cur.len()).min(chunk.len());
            cur.extend_from_slice(&chunk.split_to(take));
            if cur.len() == NONCE + SEGMENT as usize && index + 1 < total {
                let data = std::mem::replace(&mut cur, segment_buffer());
                batch.push(PlainSegment {
                    index,
                    last: false,
                    data,
                });
                index += 1;
                if batch.len() == BATCH {
                    if !flush(&mut inflight, &tx).await {
                        return;
                    }
                    let segs = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    let cipher = cipher.clone();
                    inflight = Some(tokio::spawn(async move { seal_batch(&cipher, part, segs) }));
                }
            }
        }
    }
    if seen != plain_len {
        return fail(&tx, format!("request body ended after {seen} of {plain_len} bytes")).await;
    }
    batch.push(PlainSegment {
        index,
        last: true,
        data: cur,
    });
    if !flush(&mut inflight, &tx).await {
        return;
    }
    inflight = Some(tokio::spawn(async move { seal_batch(&cipher, part, batch) }));
    flush(&mut inflight, &tx).await;
}

/// Opens a batch of stored segments `(global index, bytes)` where they lie; the plaintexts
/// in order (slices of the same buffers). Runs on the calling task, as [`seal_batch`].
fn open_batch(cipher: &ObjectCipher, layout: &Layout, segs: Vec<(u64, Vec<u8>)>) -> Result<Vec<Bytes>, String> {
    segs.into_iter()
        .map(|(gi, mut s)| {
            let (part, idx, last) = layout
                .locate(gi)
                .ok_or_else(|| format!("segment {gi} is past the object's end"))?;
            let plain = cipher
                .open_in_place(part, idx, last, &mut s)
                .map_err(|e| format!("segment {gi} (part {part}, index {idx}): {e}"))?;
            Ok(Bytes::from(s).slice(plain))
        })
        .collect()
}

/// What to send of the opened segments: skip `skip` bytes, then send `len`.
struct Window {
    skip: u64,
    len: u64,
}

impl Window {
    fn cut(&mut self, mut b: Bytes) -> Option<Bytes> {
        let skip = self.skip.min(b.len() as u64) as usize;
        self.skip -= skip as u64;
        let _ = b.split_to(skip);
        let take = self.len.min(b.len() as u64) as usize;
        b.truncate(take);
        self.len -= take as u64;
        (!b.is_empty()).then_some(b)
    }
}

/// Reads stored segments from the store's answer and opens them, a batch at a time.
struct Opener {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    cipher: Arc<ObjectCipher>,
    layout: Arc<Layout>,
    /// Global index and stored offset of the next segment.
    g: u64,
    offset: u64,
    /// Plaintext end of the requested range.
    end: u64,
    buf: Vec<u8>,
    pending: Bytes,
    window: Window,
    done: bool,
}

impl Opener {
    /// The next opened bytes of the window; `None` once it is sent.
    async fn next(&mut self) -> Result<Option<Vec<Bytes>>, String> {
        if self.done {
            return Ok(None);
        }
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::with_capacity(BATCH);
        while batch.len() < BATCH && !self.done {
            if self.pending.is_empty() {
                self.pending = match self.stream.next().await {
                    Some(Ok(c)) => c,
                    Some(Err(e)) => return Err(format!("reading the store: {e}")),
                    None => return Err("the store's answer ended early".into()),
                };
            }
            let seg_len = STORED_SEGMENT.min(self.layout.stored - self.offset) as usize;
            let take = (seg_len - self.buf.len()).min(self.pending.len());
            self.buf.extend_from_slice(&self.pending.split_to(take));
            if self.buf.len() == seg_len {
                let full = std::mem::replace(&mut self.buf, Vec::with_capacity(STORED_SEGMENT as usize));
                batch.push((self.g, full));
                self.offset += seg_len as u64;
                // The window is complete once the segment holding its end is in.
                self.done = (self.g + 1) * SEGMENT >= self.end || self.offset >= self.layout.stored;
                self.g += 1;
            }
        }
        let out = open_batch(&self.cipher, &self.layout, batch)?;
        Ok(Some(out.into_iter().filter_map(|o| self.window.cut(o)).collect()))
    }
}

impl Gateway {
    pub fn new(store: S3Client, keys: Arc<Keyring>, agencies: &[Agency]) -> Gateway {
        let by_access_key = agencies.iter().map(|a| (a.access_key.clone(), a.clone())).collect();
        Gateway {
            store,
            keys,
            by_access_key,
            manifests: Mutex::new(HashMap::new()),
        }
    }

    fn agency<T>(&self, req: &S3Request<T>) -> S3Result<&Agency> {
        let ak = req
            .credentials
            .as_ref()
            .map(|c| c.access_key.as_str())
            .ok_or_else(|| s3_error!(AccessDenied, "sign the request with your agency's access key"))?;
        self.by_access_key
            .get(ak)
            .ok_or_else(|| s3_error!(InvalidAccessKeyId, "unknown access key"))
    }

    /// The agency, when `bucket/key` is inside its prefix.
    fn object_access<T>(&self, req: &S3Request<T>, bucket: &str, key: &str) -> S3Result<&Agency> {
        let a = self.agency(req)?;
        if bucket != a.bucket || !inside(key, &a.prefix) {
            info!(agency = %a.name, bucket, key, "access denied: outside the agency's prefix");
            return Err(denied(a, &format!("{bucket}/{key}")));
        }
        Ok(a)
    }

    fn manifest_key(bucket: &str, key: &str) -> String {
        format!(
            "{RESERVED_PREFIX}manifests/{}/",
            crypto::sm3_hex(format!("{bucket}/{key}").as_bytes())
        )
    }

    fn upload_key(upload_id: &str) -> String {
        format!(
            "{RESERVED_PREFIX}uploads/{}.json",
            crypto::sm3_hex(upload_id.as_bytes())
        )
    }

    fn salt_of(meta: &BTreeMap<String, String>) -> Option<[u8; 16]> {
        crypto::unhex(meta.get(META_SALT)?)?.try_into().ok()
    }

    async fn cipher_for(
        &self,
        agency: &Agency,
        bucket: &str,
        key: &str,
        meta: &BTreeMap<String, String>,
    ) -> S3Result<ObjectCipher> {
        if meta.get(META_FORMAT).map(String::as_str) != Some("1") {
            return Err(s3_error!(
                InvalidObjectState,
                "object {bucket}/{key} was not written through the encrypting gateway (no gw-format metadata)"
            ));
        }
        let dek = meta
            .get(META_DEK)
            .ok_or_else(|| integrity(bucket, key, "no data key id"))?;
        let salt = Self::salt_of(meta).ok_or_else(|| integrity(bucket, key, "no salt"))?;
        let data_key: Zeroizing<[u8; KEY_LEN]> =
            self.keys.data_key(bucket, &agency.name, dek).await.map_err(key_error)?;
        Ok(ObjectCipher::new(&data_key, &salt, bucket, key))
    }

    /// The layout of a stored object from its metadata (and manifest, for multipart).
    async fn layout(&self, cipher: &ObjectCipher, bucket: &str, key: &str, head: &ObjectHead) -> S3Result<Layout> {
        if !head.metadata.contains_key(META_PARTS) {
            let plain =
                crypto::plain_len(head.size).ok_or_else(|| integrity(bucket, key, CryptoError::Layout(head.size)))?;
            return Ok(Layout::new(&[(0, plain)]));
        }
        let salt = head.metadata.get(META_SALT).cloned().unwrap_or_default();
        let dek = head.metadata.get(META_DEK).cloned().unwrap_or_default();
        let mkey = format!("{}{salt}.json", Self::manifest_key(bucket, key));
        let cached = self.manifests.lock().ok().and_then(|m| m.get(&mkey).cloned());
        let m = match cached {
            Some(m) => m,
            None => {
                let bytes = match self.store.get_bytes(bucket, &mkey).await {
                    Ok(b) => b,
                    Err(e) if e.is_not_found() => {
                        return Err(integrity(bucket, key, format!("its manifest {mkey} is missing")));
                    }
                    Err(e) => return Err(store_error(e)),
                };
                let m: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| integrity(bucket, key, format!("manifest {mkey}: {e}")))?;
                let expect = cipher.manifest_mac(&Manifest::canonical(bucket, key, &dek, &salt, &m.parts));
                let mac_ok = crypto::unhex(&m.mac)
                    .is_some_and(|mac| bool::from(subtle::ConstantTimeEq::ct_eq(mac.as_slice(), &expect[..])));
                if m.salt != salt || m.dek != dek || !mac_ok {
                    return Err(integrity(bucket, key, format!("manifest {mkey} does not authenticate")));
                }
                let m = Arc::new(m);
                if let Ok(mut c) = self.manifests.lock() {
                    if c.len() > 4096 {
                        c.clear();
                    }
                    c.insert(mkey, m.clone());
                }
                m
            }
        };
        let layout = Layout::new(&m.parts);
        if layout.stored != head.size {
            return Err(integrity(
                bucket,
                key,
                format!(
                    "stored size {} differs from its manifest's {}",
                    head.size, layout.stored
                ),
            ));
        }
        Ok(layout)
    }

    fn timestamp(http_date: Option<&String>) -> Option<Timestamp> {
        Timestamp::parse(TimestampFormat::HttpDate, http_date?).ok()
    }

    fn etag(v: Option<&String>) -> Option<ETag> {
        ETag::parse_http_header(v?.as_bytes()).ok()
    }

    /// Encrypts `body` (`len` plaintext bytes) into the store as a single object or a part.
    async fn put_sealed(
        &self,
        body: StreamingBlob,
        cipher: ObjectCipher,
        len: u64,
        part: u32,
        send: impl AsyncFnOnce(reqwest::Body, u64) -> Result<Option<String>, UpstreamError>,
    ) -> S3Result<Option<String>> {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let sealer = tokio::spawn(seal_stream(body, Arc::new(cipher), part, len, tx));
        let res = send(reqwest::Body::wrap_stream(ChanStream(rx)), crypto::stored_len(len)).await;
        let _ = sealer.await;
        res.map_err(store_error)
    }

    async fn head_inner(&self, agency: &Agency, bucket: &str, key: &str) -> S3Result<(ObjectHead, Layout)> {
        let head = self
            .store
            .head_object(bucket, key)
            .await
            .map_err(store_error)?
            .ok_or_else(|| s3_error!(NoSuchKey))?;
        let cipher = self.cipher_for(agency, bucket, key, &head.metadata).await?;
        let layout = self.layout(&cipher, bucket, key, &head).await?;
        Ok((head, layout))
    }
}

fn content_length(input: Option<i64>, body: &Option<StreamingBlob>) -> S3Result<u64> {
    use s3s::stream::ByteStream;
    input
        .and_then(|l| u64::try_from(l).ok())
        .or_else(|| body.as_ref()?.remaining_length().exact().map(|n| n as u64))
        .ok_or_else(|| s3_error!(MissingContentLength, "the gateway needs the body's length up front"))
}

fn new_meta(dek: &str, salt: &[u8; 16], multipart: bool) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(META_FORMAT.to_string(), "1".to_string());
    m.insert(META_DEK.to_string(), dek.to_string());
    m.insert(META_SALT.to_string(), crypto::hex(salt));
    if multipart {
        m.insert(META_PARTS.to_string(), "1".to_string());
    }
    m
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let a = self.agency(&req)?;
        if req.input.bucket != a.bucket {
            return Err(denied(a, &format!("bucket {}", req.input.bucket)));
        }
        self.store.head_bucket(&a.bucket).await.map_err(store_error)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let a = self.agency(&req)?;
        if req.input.bucket != a.bucket {
            return Err(denied(a, &format!("bucket {}", req.input.bucket)));
        }
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let a = self.object_access(&req, &req.input.bucket, &req.input.key)?.clone();
        let input = req.input;
        let len = content_length(input.content_length, &input.body)?;
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let (dek, data_key) = self
            .keys
            .current_data_key(&a.bucket, &a.name)
            .await
            .map_err(key_error)?;
        let salt: [u8; 16] = crypto::random();
        let cipher = ObjectCipher::new(&data_key, &salt, &input.bucket, &input.key);
        let meta = new_meta(&dek, &salt, false);
        let (bucket, key, ct) = (input.bucket.clone(), input.key.clone(), input.content_type.clone());
        let store = &self.store;
        let etag = self
            .put_sealed(body, cipher, len, 0, async |b, l| {
                store.put_object(&bucket, &key, b, l, &meta, ct.as_deref()).await
            })
            .await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Self::etag(etag.as_ref()),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let a = self.object_access(&req, &req.input.bucket, &req.input.key)?;
        let (head, layout) = self.head_inner(a, &req.input.bucket, &req.input.key).await?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(layout.plain as i64),
            e_tag: Self::etag(head.etag.as_ref()),
            last_modified: Self::timestamp(head.last_modified.as_ref()),
            content_type: head.content_type.clone(),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let a = self.object_access(&req, &req.input.bucket, &req.input.key)?.clone();
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        if req.input.part_number.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "partNumber reads are not supported by the gateway"
            ));
        }
        let range = req.input.range;
        // The stored range to ask for: segments are a fixed stored size, so an explicit
        // range maps without the object's head; a suffix range needs its size first.
        let stored_range = match range {
            None => None,
            Some(Range::Int { first, last }) => {
                let a0 = first / SEGMENT * STORED_SEGMENT;
                let b0 = last.map_or(i64::MAX as u64, |l| (l / SEGMENT + 1) * STORED_SEGMENT - 1);
                Some((a0, b0))
            }
            Some(Range::Suffix { .. }) => {
                let (_, layout) = self.head_inner(&a, &bucket, &key).await?;
                let r = range
                    .and_then(|r| r.check(layout.plain).ok())
                    .ok_or_else(|| s3_error!(InvalidRange))?;
                Some((r.start / SEGMENT * STORED_SEGMENT, i64::MAX as u64))
            }
        };
        let (head, resp) = match self.store.get_object(&bucket, &key, stored_range).await {
            Ok(r) => r,
            Err(e) if e.status() == Some(reqwest::StatusCode::RANGE_NOT_SATISFIABLE) => {
                return Err(s3_error!(InvalidRange));
            }
            Err(e) => return Err(store_error(e)),
        };
        let cipher = self.cipher_for(&a, &bucket, &key, &head.metadata).await?;
        let layout = Arc::new(self.layout(&cipher, &bucket, &key, &head).await?);
        let plain = match range {
            None => 0..layout.plain,
            Some(r) => r.check(layout.plain).map_err(|_| s3_error!(InvalidRange))?,
        };
        let first_segment = plain.start / SEGMENT;
        let window = Window {
            skip: plain.start - first_segment * SEGMENT,
            len: plain.end - plain.start,
        };
        let want = plain.end - plain.start;
        let plain_total = layout.plain;
        let mut opener = Opener {
            stream: Box::pin(resp.bytes_stream()),
            cipher: Arc::new(cipher),
            offset: first_segment * STORED_SEGMENT,
            g: first_segment,
            layout,
            end: plain.end,
            buf: Vec::with_capacity(STORED_SEGMENT as usize),
            pending: Bytes::new(),
            window,
            done: false,
        };
        // The first batch is opened before answering, so an altered object is refused with
        // an error rather than served as a broken body (later batches can only cut it off).
        let first = opener.next().await.map_err(|e| integrity(&bucket, &key, e))?;
        let (tx, rx) = mpsc::channel(CHANNEL);
        let (b2, k2) = (bucket.clone(), key.clone());
        tokio::spawn(async move {
            let mut batch = first;
            loop {
                for b in batch.into_iter().flatten() {
                    if tx.send(Ok(b)).await.is_err() {
                        return;
                    }
                }
                batch = match opener.next().await {
                    Ok(Some(b)) => Some(b),
                    Ok(None) => return,
                    Err(e) => {
                        warn!(bucket = %b2, key = %k2, error = %e, "stored object failed authentication");
                        let _ = tx
                            .send(Err(io::Error::other(format!("integrity check failed: {e}"))))
                            .await;
                        return;
                    }
                };
            }
        });
        let body = StreamingBlob::wrap(ChanStream(rx));
        let content_range = range.map(|_| {
            if want == 0 {
                format!("bytes */{plain_total}")
            } else {
                format!("bytes {}-{}/{plain_total}", plain.start, plain.end - 1)
            }
        });
        Ok(S3Response::new(GetObjectOutput {
            body: Some(body),
            content_length: Some(want as i64),
            content_range,
            e_tag: Self::etag(head.etag.as_ref()),
            last_modified: Self::timestamp(head.last_modified.as_ref()),
            content_type: head.content_type.clone(),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.object_access(&req, &req.input.bucket, &req.input.key)?;
        self.delete_inner(&req.input.bucket, &req.input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        for o in &req.input.delete.objects {
            self.object_access(&req, &bucket, &o.key)?;
        }
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for o in &req.input.delete.objects {
            match self.delete_inner(&bucket, &o.key).await {
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(o.key.clone()),
                    ..Default::default()
                }),
                Err(e) => errors.push(s3s::dto::Error {
                    key: Some(o.key.clone()),
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                    ..Default::default()
                }),
            }
        }
        let quiet = req.input.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let a = self.agency(&req)?;
        let input = &req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        if input.bucket != a.bucket || !inside(&prefix, &a.prefix) {
            info!(agency = %a.name, bucket = %input.bucket, prefix, "list denied: outside the agency's prefix");
            return Err(denied(a, &format!("listing {}/{prefix}*", input.bucket)));
        }
        let page = self
            .store
            .list_objects_v2(
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                input.continuation_token.as_deref(),
                input.start_after.as_deref(),
                input.max_keys,
            )
            .await
            .map_err(store_error)?;
        let contents: Vec<Object> = page.contents.into_iter().map(listed).collect();
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .into_iter()
            .map(|p| CommonPrefix { prefix: Some(p.prefix) })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket.clone()),
            prefix: Some(prefix),
            key_count: Some((contents.len() + prefixes.len()) as i32),
            max_keys: Some(input.max_keys.unwrap_or(1000)),
            is_truncated: Some(page.is_truncated),
            continuation_token: input.continuation_token.clone(),
            next_continuation_token: page.next_continuation_token,
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            delimiter: input.delimiter.clone(),
            start_after: input.start_after.clone(),
            ..Default::default()
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let a = self.agency(&req)?;
        let input = &req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        if input.bucket != a.bucket || !inside(&prefix, &a.prefix) {
            return Err(denied(a, &format!("listing {}/{prefix}*", input.bucket)));
        }
        let page = self
            .store
            .list_objects_v2(
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                None,
                input.marker.as_deref(),
                input.max_keys,
            )
            .await
            .map_err(store_error)?;
        let next_marker = page
            .is_truncated
            .then(|| {
                let k = page.contents.last().map(|o| o.key.clone());
                let p = page.common_prefixes.last().map(|p| p.prefix.clone());
                k.max(p)
            })
            .flatten();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket.clone()),
            prefix: Some(prefix),
            marker: input.marker.clone(),
            max_keys: Some(input.max_keys.unwrap_or(1000)),
            is_truncated: Some(page.is_truncated),
            next_marker,
            contents: Some(page.contents.into_iter().map(listed).collect()),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p.prefix) })
                    .collect(),
            ),
            delimiter: input.delimiter.clone(),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let a = self.object_access(&req, &req.input.bucket, &req.input.key)?.clone();
        let input = req.input;
        let (dek, _) = self
            .keys
            .current_data_key(&a.bucket, &a.name)
            .await
            .map_err(key_error)?;
        let salt: [u8; 16] = crypto::random();
        let upload_id = self
            .store
            .create_multipart(
                &input.bucket,
                &input.key,
                &new_meta(&dek, &salt, true),
                input.content_type.as_deref(),
            )
            .await
            .map_err(store_error)?;
        let record = UploadRecord {
            agency: a.name.clone(),
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            dek,
            salt: crypto::hex(&salt),
        };
        let body = serde_json::to_vec(&record).map_err(|e| s3_error!(InternalError, "upload record: {e}"))?;
        self.store
            .put_bytes(&input.bucket, &Self::upload_key(&upload_id), Bytes::from(body))
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let a = self.object_access(&req, &req.input.bucket, &req.input.key)?.clone();
        let input = req.input;
        let part = u32::try_from(input.part_number)
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| s3_error!(InvalidArgument, "partNumber must be 1 to 10000"))?;
        let record = self.upload(&a, &input.bucket, &input.key, &input.upload_id).await?;
        let len = content_length(input.content_length, &input.body)?;
        let body = input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let cipher = self.record_cipher(&a, &record).await?;
        let store = &self.store;
        let (bucket, key, id) = (input.bucket.clone(), input.key.clone(), input.upload_id.clone());
        let etag = self
            .put_sealed(body, cipher, len, part, async |b, l| {
                store.upload_part(&bucket, &key, &id, part, b, l).await
            })
            .await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Self::etag(etag.as_ref()),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let a = self.object_access(&req, &req.input.bucket, &req.input.key)?.clone();
        let input = req.input;
        let (bucket, key, id) = (input.bucket.clone(), input.key.clone(), input.upload_id.clone());
        let record = self.upload(&a, &bucket, &key, &id).await?;
        let asked: Vec<(u32, String)> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let n = p.part_number.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
                let etag = p.e_tag.map(|e| format!("\"{}\"", e.value())).unwrap_or_default();
                (n, etag)
            })
            .collect();
        if asked.is_empty() {
            return Err(s3_error!(InvalidPart, "list at least one part"));
        }
        let stored: HashMap<u32, u64> = self
            .store
            .list_parts(&bucket, &key, &id)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|p| (p.part_number, p.size))
            .collect();
        let mut parts = Vec::with_capacity(asked.len());
        for (i, (n, _)) in asked.iter().enumerate() {
            let size = *stored
                .get(n)
                .ok_or_else(|| s3_error!(InvalidPart, "part {n} was not uploaded"))?;
            let plain = crypto::plain_len(size)
                .ok_or_else(|| s3_error!(InvalidPart, "part {n} is not a sealed part ({size} bytes)"))?;
            let last = i + 1 == asked.len();
            if !last && (plain == 0 || !plain.is_multiple_of(SEGMENT)) {
                return Err(s3_error!(
                    InvalidPart,
                    "part {n} is {plain} bytes: the encrypting gateway needs every part but the last to be a \
                     non-zero multiple of 64 KiB (5 MiB, 8 MiB and 16 MiB parts all are)"
                ));
            }
            if last && plain == 0 && asked.len() > 1 {
                return Err(s3_error!(InvalidPart, "the last part {n} is empty; leave it out"));
            }
            parts.push((*n, plain));
        }
        let cipher = self.record_cipher(&a, &record).await?;
        let mac = cipher.manifest_mac(&Manifest::canonical(&bucket, &key, &record.dek, &record.salt, &parts));
        let manifest = Manifest {
            format: 1,
            dek: record.dek.clone(),
            salt: record.salt.clone(),
            parts,
            mac: crypto::hex(&mac),
        };
        let mdir = Self::manifest_key(&bucket, &key);
        let mkey = format!("{mdir}{}.json", record.salt);
        let body = serde_json::to_vec(&manifest).map_err(|e| s3_error!(InternalError, "manifest: {e}"))?;
        self.store
            .put_bytes(&bucket, &mkey, Bytes::from(body))
            .await
            .map_err(store_error)?;
        let etag = self
            .store
            .complete_multipart(&bucket, &key, &id, &asked)
            .await
            .map_err(store_error)?;
        let _ = self.store.delete_object(&bucket, &Self::upload_key(&id)).await;
        // Manifests of the versions this one replaced.
        if let Ok(old) = self.store.list_all(&bucket, &mdir).await {
            for o in old.into_iter().filter(|o| o.key != mkey) {
                let _ = self.store.delete_object(&bucket, &o.key).await;
            }
        }
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(bucket),
            key: Some(key),
            e_tag: Self::etag(etag.as_ref()),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let a = self.object_access(&req, &req.input.bucket, &req.input.key)?.clone();
        let input = req.input;
        self.upload(&a, &input.bucket, &input.key, &input.upload_id).await?;
        self.store
            .abort_multipart(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(store_error)?;
        let _ = self
            .store
            .delete_object(&input.bucket, &Self::upload_key(&input.upload_id))
            .await;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}

fn listed(o: crate::upstream::ListedObject) -> Object {
    Object {
        size: Some(crypto::plain_len(o.size).unwrap_or(o.size) as i64),
        e_tag: o.etag.as_ref().and_then(|e| ETag::parse_http_header(e.as_bytes()).ok()),
        last_modified: o
            .last_modified
            .as_ref()
            .and_then(|t| Timestamp::parse(TimestampFormat::DateTime, t).ok()),
        key: Some(o.key),
        ..Default::default()
    }
}

impl Gateway {
    async fn delete_inner(&self, bucket: &str, key: &str) -> S3Result<()> {
        self.store.delete_object(bucket, key).await.map_err(store_error)?;
        let mdir = Self::manifest_key(bucket, key);
        if let Ok(old) = self.store.list_all(bucket, &mdir).await {
            for o in old {
                let _ = self.store.delete_object(bucket, &o.key).await;
            }
        }
        Ok(())
    }

    /// The record of upload `id`, which must be this agency's upload of `bucket/key`.
    async fn upload(&self, a: &Agency, bucket: &str, key: &str, id: &str) -> S3Result<UploadRecord> {
        let bytes = match self.store.get_bytes(bucket, &Self::upload_key(id)).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(s3_error!(NoSuchUpload)),
            Err(e) => return Err(store_error(e)),
        };
        let r: UploadRecord =
            serde_json::from_slice(&bytes).map_err(|e| s3_error!(InternalError, "upload record: {e}"))?;
        if r.agency != a.name || r.bucket != bucket || r.key != key {
            return Err(s3_error!(NoSuchUpload));
        }
        Ok(r)
    }

    async fn record_cipher(&self, a: &Agency, r: &UploadRecord) -> S3Result<ObjectCipher> {
        let salt: [u8; 16] = crypto::unhex(&r.salt)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| s3_error!(InternalError, "upload record has no salt"))?;
        let data_key = self
            .keys
            .data_key(&a.bucket, &a.name, &r.dek)
            .await
            .map_err(key_error)?;
        Ok(ObjectCipher::new(&data_key, &salt, &r.bucket, &r.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_never_reach_another_prefix() {
        assert!(inside("agency-b/backups/x", "agency-b/"));
        assert!(inside("agency-b/a..b/x", "agency-b/"));
        assert!(!inside("agency-b/../agency-a/x", "agency-b/"));
        assert!(!inside("agency-b/./x", "agency-b/"));
        assert!(!inside("agency-b/..", "agency-b/"));
        assert!(!inside("agency-b\\..\\agency-a/x", "agency-b\\"));
        assert!(!inside("agency-a/x", "agency-b/"));
    }

    #[test]
    fn layout_locates_segments_across_parts() {
        // Two parts of 2 segments, then a part of 1.5 segments.
        let l = Layout::new(&[(1, 2 * SEGMENT), (2, 2 * SEGMENT), (3, SEGMENT + 10)]);
        assert_eq!(l.plain, 5 * SEGMENT + 10);
        assert_eq!(l.stored, 5 * STORED_SEGMENT + 10 + crypto::OVERHEAD);
        assert_eq!(
            crypto::plain_len(l.stored),
            Some(l.plain),
            "aligned parts list like one object"
        );
        assert_eq!(l.locate(0), Some((1, 0, false)));
        assert_eq!(l.locate(1), Some((1, 1, true)));
        assert_eq!(l.locate(2), Some((2, 0, false)));
        assert_eq!(l.locate(4), Some((3, 0, false)));
        assert_eq!(l.locate(5), Some((3, 1, true)));
        assert_eq!(l.locate(6), None);
        let single = Layout::new(&[(0, 0)]);
        assert_eq!(single.locate(0), Some((0, 0, true)));
    }

    #[test]
    fn window_cuts_the_requested_bytes() {
        let mut w = Window { skip: 3, len: 4 };
        assert_eq!(w.cut(Bytes::from(vec![0, 1, 2])), None);
        assert_eq!(w.cut(Bytes::from(vec![3, 4, 5])).as_deref(), Some(&[3, 4, 5][..]));
        assert_eq!(w.cut(Bytes::from(vec![6, 7])).as_deref(), Some(&[6][..]));
        assert_eq!(w.cut(Bytes::from(vec![8])), None);
    }

    fn run_seal(len: u64, chunks: &[usize]) -> (Vec<u8>, ObjectCipher) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let cipher = ObjectCipher::new(&[1; 16], &[2; 16], "b", "k");
        let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut parts = Vec::new();
        let mut at = 0usize;
        for &c in chunks.iter().cycle() {
            if at >= plain.len() {
                break;
            }
            let end = (at + c).min(plain.len());
            parts.push(Ok::<_, io::Error>(Bytes::copy_from_slice(&plain[at..end])));
            at = end;
        }
        let body = StreamingBlob::wrap(futures::stream::iter(parts));
        let out = rt.block_on(async {
            let (tx, mut rx) = mpsc::channel(4);
            let c2 = Arc::new(ObjectCipher::new(&[1; 16], &[2; 16], "b", "k"));
            tokio::spawn(seal_stream(body, c2, 0, len, tx));
            let mut out = Vec::new();
            while let Some(b) = rx.recv().await {
                out.extend_from_slice(&b.unwrap());
            }
            out
        });
        (out, cipher)
    }

    #[test]
    fn sealed_stream_has_the_layout_and_decrypts() {
        for (len, chunks) in [
            (0u64, vec![1]),
            (5, vec![2]),
            (SEGMENT, vec![1000]),
            (3 * SEGMENT + 7, vec![70_000, 3]),
            (40 * SEGMENT, vec![1 << 20]),
        ] {
            let (stored, cipher) = run_seal(len, &chunks);
            assert_eq!(stored.len() as u64, crypto::stored_len(len), "len {len}");
            let layout = Layout::new(&[(0, len)]);
            let mut plain = Vec::new();
            for (g, seg) in stored.chunks(STORED_SEGMENT as usize).enumerate() {
                let (p, i, last) = layout.locate(g as u64).unwrap();
                cipher.open(p, i, last, seg, &mut plain).unwrap();
            }
            let expect: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(plain, expect, "len {len}");
        }
    }

    #[test]
    fn a_body_of_another_length_than_declared_is_refused() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        for (declared, actual) in [(100u64, 99usize), (100, 101), (SEGMENT, SEGMENT as usize + 1)] {
            let body = StreamingBlob::wrap(futures::stream::iter([Ok::<_, io::Error>(Bytes::from(vec![
                1u8;
                actual
            ]))]));
            let failed = rt.block_on(async {
                let (tx, mut rx) = mpsc::channel(4);
                let c = Arc::new(ObjectCipher::new(&[1; 16], &[2; 16], "b", "k"));
                tokio::spawn(seal_stream(body, c, 0, declared, tx));
                let mut failed = false;
                while let Some(b) = rx.recv().await {
                    failed |= b.is_err();
                }
                failed
            });
            assert!(failed, "declared {declared}, sent {actual}: not refused");
        }
    }

    #[test]
    fn truncation_at_a_segment_boundary_is_caught() {
        let len = 3 * SEGMENT;
        let (stored, cipher) = run_seal(len, &[1 << 16]);
        // Drop the last segment: the new last segment was sealed as "not last".
        let cut = &stored[..2 * STORED_SEGMENT as usize];
        let plain = crypto::plain_len(cut.len() as u64).unwrap();
        let layout = Layout::new(&[(0, plain)]);
        let mut out = Vec::new();
        let (p, i, last) = layout.locate(1).unwrap();
        assert!(last);
        let seg = &cut[STORED_SEGMENT as usize..];
        assert_eq!(cipher.open(p, i, last, seg, &mut out), Err(CryptoError::Auth));
    }

    #[test]
    fn swapped_segments_are_caught() {
        let (stored, cipher) = run_seal(3 * SEGMENT, &[1 << 16]);
        let s = STORED_SEGMENT as usize;
        let mut swapped = stored.clone();
        swapped[..s].copy_from_slice(&stored[s..2 * s]);
        swapped[s..2 * s].copy_from_slice(&stored[..s]);
        let mut out = Vec::new();
        assert_eq!(
            cipher.open(0, 0, false, &swapped[..s], &mut out),
            Err(CryptoError::Auth)
        );
        // And a segment of another object (another salt) under this one's position.
        let other = ObjectCipher::new(&[1; 16], &[3; 16], "b", "k");
        assert_eq!(other.open(0, 0, false, &stored[..s], &mut out), Err(CryptoError::Auth));
    }
}
