//! A small S3 client (path-style requests, AWS Signature Version 4) for the object store
//! behind the gateway. Bodies are sent as `UNSIGNED-PAYLOAD` and streamed, so a large
//! object never sits in memory. The integration tests use it too, as each agency's client.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::crypto::hex;

/// What an S3 request to the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("object store answered {status} {code}: {message}")]
    Status {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("cannot reach the object store: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot parse the object store's answer: {0}")]
    Parse(String),
}

impl UpstreamError {
    /// The HTTP status, when the store answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            UpstreamError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The S3 error code, when the store answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            UpstreamError::Status { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the store said the object (or upload) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }
}

pub type Result<T, E = UpstreamError> = std::result::Result<T, E>;

/// Where the store is and who the gateway is to it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `http://host:port` or `https://host:port`.
    pub url: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

/// An S3 client.
#[derive(Clone)]
pub struct S3Client {
    http: reqwest::Client,
    ep: Endpoint,
    host: String,
    encode_slash: bool,
}

/// HEAD (or GET) answer: the stored object's size and metadata.
#[derive(Clone, Debug, Default)]
pub struct ObjectHead {
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_type: Option<String>,
    /// `x-amz-meta-*` headers, names without the prefix.
    pub metadata: BTreeMap<String, String>,
}

/// One listed object.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListedObject {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Size", default)]
    pub size: u64,
    #[serde(rename = "ETag", default)]
    pub etag: Option<String>,
    #[serde(rename = "LastModified", default)]
    pub last_modified: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListedPrefix {
    #[serde(rename = "Prefix")]
    pub prefix: String,
}

/// One page of ListObjectsV2.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListPage {
    #[serde(rename = "IsTruncated", default)]
    pub is_truncated: bool,
    #[serde(rename = "NextContinuationToken", default)]
    pub next_continuation_token: Option<String>,
    #[serde(rename = "Contents", default)]
    pub contents: Vec<ListedObject>,
    #[serde(rename = "CommonPrefixes", default)]
    pub common_prefixes: Vec<ListedPrefix>,
}

/// One uploaded part (ListParts).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListedPart {
    #[serde(rename = "PartNumber")]
    pub part_number: u32,
    #[serde(rename = "Size", default)]
    pub size: u64,
    #[serde(rename = "ETag", default)]
    pub etag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ListPartsResult {
    #[serde(rename = "Part", default)]
    parts: Vec<ListedPart>,
}

#[derive(Debug, Default, Deserialize)]
struct InitiateResult {
    #[serde(rename = "UploadId")]
    upload_id: String,
}

#[derive(Debug, Default, Deserialize)]
struct CompleteResult {
    #[serde(rename = "ETag", default)]
    etag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(rename = "Code", default)]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

/// Percent-encodes as SigV4 wants: unreserved characters kept, `/` kept when `path`.
pub fn uri_encode(s: &str, path: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (path && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

impl S3Client {
    pub fn new(ep: Endpoint) -> Result<S3Client> {
        let host = ep
            .url
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/').to_string())
            .ok_or_else(|| UpstreamError::Parse(format!("endpoint {:?} has no http:// or https://", ep.url)))?;
        // reqwest is built without a default TLS provider; ring is the workspace's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(S3Client {
            http,
            ep,
            host,
            encode_slash: false,
        })
    }

    /// A client that sends `/` inside keys as `%2F` (servers decode it back to `/`, and sign
    /// the decoded path). Tests
    /// use it to send names such as `agency-b/../agency-a/x` that an HTTP client would
    /// otherwise normalise before they leave it.
    pub fn encoding_slashes(mut self) -> S3Client {
        self.encode_slash = true;
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// Builds and signs a request. `key` may be empty (a bucket request).
    fn request(
        &self,
        method: Method,
        bucket: &str,
        key: &str,
        query: &[(&str, String)],
        mut headers: HeaderMap,
    ) -> reqwest::RequestBuilder {
        let mut path = format!("/{}", uri_encode(bucket, false));
        let mut wire_path = path.clone();
        if !key.is_empty() {
            path.push('/');
            path.push_str(&uri_encode(key, true));
            wire_path.push('/');
            wire_path.push_str(&uri_encode(key, !self.encode_slash));
        }
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        q.sort();
        let query_string = q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");

        let now = jiff::Timestamp::now();
        let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let date = &amz_date[..8];
        headers.insert("x-amz-date", HeaderValue::from_str(&amz_date).expect("ASCII date"));
        headers.insert("x-amz-content-sha256", HeaderValue::from_static("UNSIGNED-PAYLOAD"));
        headers.insert(
            reqwest::header::HOST,
            HeaderValue::from_str(&self.host).expect("host from URL"),
        );

        let mut signed: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| n.as_str() == "host" || n.as_str().starts_with("x-amz-"))
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    v.to_str().unwrap_or_default().trim().to_string(),
                )
            })
            .collect();
        signed.sort();
        let canonical_headers: String = signed.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let signed_headers = signed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
        let canonical_request =
            format!("{method}\n{path}\n{query_string}\n{canonical_headers}\n{signed_headers}\nUNSIGNED-PAYLOAD");
        let scope = format!("{date}/{}/s3/aws4_request", self.ep.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let k_date = hmac256(format!("AWS4{}", self.ep.secret_key).as_bytes(), date.as_bytes());
        let k_region = hmac256(&k_date, self.ep.region.as_bytes());
        let k_service = hmac256(&k_region, b"s3");
        let k_signing = hmac256(&k_service, b"aws4_request");
        let signature = hex(&hmac256(&k_signing, string_to_sign.as_bytes()));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.ep.access_key
        );
        if let Ok(v) = HeaderValue::from_str(&auth) {
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let mut url = format!("{}{wire_path}", self.ep.url.trim_end_matches('/'));
        if !query_string.is_empty() {
            url.push('?');
            url.push_str(&query_string);
        }
        self.http.request(method, url).headers(headers)
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = rb.send().await?;
        if resp.status().is_success() || resp.status() == StatusCode::PARTIAL_CONTENT {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let e: ErrorBody = quick_xml::de::from_str(&body).unwrap_or_default();
        Err(UpstreamError::Status {
            status,
            code: if e.code.is_empty() {
                status.canonical_reason().unwrap_or("Error").replace(' ', "")
            } else {
                e.code
            },
            message: e.message,
        })
    }

    fn meta_headers(meta: &BTreeMap<String, String>, content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in meta {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(format!("x-amz-meta-{}", k.to_ascii_lowercase()).as_bytes()),
                HeaderValue::from_str(v),
            ) {
                h.insert(n, v);
            }
        }
        if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
            h.insert(reqwest::header::CONTENT_TYPE, ct);
        }
        h
    }

    /// Reads size, ETag and metadata from a HEAD or GET answer.
    pub fn head_of(resp_headers: &HeaderMap, size: u64) -> ObjectHead {
        let get = |n: &str| resp_headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let metadata = resp_headers
            .iter()
            .filter_map(|(n, v)| {
                let k = n.as_str().strip_prefix("x-amz-meta-")?;
                Some((k.to_string(), v.to_str().ok()?.to_string()))
            })
            .collect();
        ObjectHead {
            size,
            etag: get("etag"),
            last_modified: get("last-modified"),
            content_type: get("content-type"),
            metadata,
        }
    }

    /// PUT with a streamed body of exactly `len` bytes.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: reqwest::Body,
        len: u64,
        meta: &BTreeMap<String, String>,
        content_type: Option<&str>,
    ) -> Result<Option<String>> {
        let mut h = Self::meta_headers(meta, content_type);
        h.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(len));
        let resp = self
            .send(self.request(Method::PUT, bucket, key, &[], h).body(body))
            .await?;
        Ok(resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    /// PUT of a small body held in memory.
    pub async fn put_bytes(&self, bucket: &str, key: &str, data: Bytes) -> Result<Option<String>> {
        let len = data.len() as u64;
        self.put_object(bucket, key, reqwest::Body::from(data), len, &BTreeMap::new(), None)
            .await
    }

    /// GET, optionally of the inclusive byte range `range`. Returns the object's head (with
    /// the full size, from Content-Range when ranged) and the answer whose body to read.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<(ObjectHead, reqwest::Response)> {
        let mut h = HeaderMap::new();
        if let Some((a, b)) = range
            && let Ok(v) = HeaderValue::from_str(&format!("bytes={a}-{b}"))
        {
            h.insert(reqwest::header::RANGE, v);
        }
        let resp = self.send(self.request(Method::GET, bucket, key, &[], h)).await?;
        let len = resp.content_length().unwrap_or(0);
        let total = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next())
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(len);
        Ok((Self::head_of(resp.headers(), total), resp))
    }

    /// GET of a whole small object into memory.
    pub async fn get_bytes(&self, bucket: &str, key: &str) -> Result<Bytes> {
        let (_, resp) = self.get_object(bucket, key, None).await?;
        Ok(resp.bytes().await?)
    }

    /// HEAD; `None` when there is no such object.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>> {
        match self
            .send(self.request(Method::HEAD, bucket, key, &[], HeaderMap::new()))
            .await
        {
            Ok(resp) => {
                let size = resp
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Ok(Some(Self::head_of(resp.headers(), size)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// HEAD of a bucket.
    pub async fn head_bucket(&self, bucket: &str) -> Result<()> {
        self.send(self.request(Method::HEAD, bucket, "", &[], HeaderMap::new()))
            .await
            .map(|_| ())
    }

    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        match self
            .send(self.request(Method::DELETE, bucket, key, &[], HeaderMap::new()))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One page of ListObjectsV2.
    pub async fn list_objects_v2(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        continuation_token: Option<&str>,
        start_after: Option<&str>,
        max_keys: Option<i32>,
    ) -> Result<ListPage> {
        let mut q = vec![("list-type", "2".to_string()), ("prefix", prefix.to_string())];
        if let Some(d) = delimiter {
            q.push(("delimiter", d.to_string()));
        }
        if let Some(t) = continuation_token {
            q.push(("continuation-token", t.to_string()));
        }
        if let Some(s) = start_after {
            q.push(("start-after", s.to_string()));
        }
        if let Some(m) = max_keys {
            q.push(("max-keys", m.to_string()));
        }
        let resp = self
            .send(self.request(Method::GET, bucket, "", &q, HeaderMap::new()))
            .await?;
        let text = resp.text().await?;
        quick_xml::de::from_str(&text).map_err(|e| UpstreamError::Parse(format!("ListObjectsV2: {e}")))
    }

    /// Every key under `prefix` (all pages).
    pub async fn list_all(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_objects_v2(bucket, prefix, None, token.as_deref(), None, None)
                .await?;
            out.extend(page.contents);
            match page.next_continuation_token {
                Some(t) if page.is_truncated => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    pub async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        meta: &BTreeMap<String, String>,
        content_type: Option<&str>,
    ) -> Result<String> {
        let h = Self::meta_headers(meta, content_type);
        let resp = self
            .send(self.request(Method::POST, bucket, key, &[("uploads", String::new())], h))
            .await?;
        let text = resp.text().await?;
        let r: InitiateResult =
            quick_xml::de::from_str(&text).map_err(|e| UpstreamError::Parse(format!("CreateMultipartUpload: {e}")))?;
        Ok(r.upload_id)
    }

    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: u32,
        body: reqwest::Body,
        len: u64,
    ) -> Result<Option<String>> {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::CONTENT_LENGTH, HeaderValue::from(len));
        let q = [("partNumber", part.to_string()), ("uploadId", upload_id.to_string())];
        let resp = self
            .send(self.request(Method::PUT, bucket, key, &q, h).body(body))
            .await?;
        Ok(resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    pub async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Vec<ListedPart>> {
        let q = [("uploadId", upload_id.to_string())];
        let resp = self
            .send(self.request(Method::GET, bucket, key, &q, HeaderMap::new()))
            .await?;
        let text = resp.text().await?;
        let r: ListPartsResult =
            quick_xml::de::from_str(&text).map_err(|e| UpstreamError::Parse(format!("ListParts: {e}")))?;
        let mut parts = r.parts;
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    /// Completes an upload from `(part number, ETag)` pairs in order.
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<Option<String>> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            let etag = etag.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            xml.push_str(&format!("<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let q = [("uploadId", upload_id.to_string())];
        let resp = self
            .send(self.request(Method::POST, bucket, key, &q, HeaderMap::new()).body(xml))
            .await?;
        let text = resp.text().await?;
        if text.contains("<Error>") {
            let e: ErrorBody = quick_xml::de::from_str(&text).unwrap_or_default();
            return Err(UpstreamError::Status {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: e.code,
                message: e.message,
            });
        }
        let r: CompleteResult = quick_xml::de::from_str(&text).unwrap_or_default();
        Ok(r.etag)
    }

    pub async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let q = [("uploadId", upload_id.to_string())];
        self.send(self.request(Method::DELETE, bucket, key, &q, HeaderMap::new()))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_sigv4() {
        assert_eq!(uri_encode("a b/c~d", true), "a%20b/c~d");
        assert_eq!(uri_encode("a b/c", false), "a%20b%2Fc");
        assert_eq!(uri_encode("é", true), "%C3%A9");
    }
}
