//! Integrity of evidence reports: canonical serialisation, SM3 digests (GB/T 32905-2016) and
//! SM2 signatures (GB/T 32918-2016, GM/T 0003-2012) over them.
//!
//! A signed report is a file an assessor takes away. Its JSON form is an envelope
//! `{"report": …, "signature": …}` written in one canonical layout (keys sorted, two-space
//! indentation, one trailing newline); the signature is SM2 over the canonical compact form
//! of `report` (the signer's SM3 digest of `Z_A ‖ message`, with the default distinguishing
//! identifier `1234567812345678` of GM/T 0009). [`verify_file`] accepts a file only when its
//! bytes are exactly the canonical layout of what it parses to and the signature verifies
//! under the platform's public key: changing any byte either breaks the JSON, leaves the
//! canonical layout or changes signed content — each refused. The HTML form embeds the
//! envelope and is verified by rendering it again from the embedded envelope and comparing
//! every byte.
//!
//! The private key is reached only through a [`SigningKeyProvider`]: the built-in one holds a
//! PKCS#8 key read from a Kubernetes Secret; a hardware cipher machine (密码机, GM/T 0018 SDF
//! `InternalSign_ECC`) or a KMS implements the same calls and never hands the key out.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sm2::dsa::signature::Verifier;
use sm2::dsa::{Signature, SigningKey, VerifyingKey};
use sm2::elliptic_curve::Generate;
use sm2::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sm3::{Digest, Sm3};

/// Name of the signature algorithm in the envelope.
pub const ALGORITHM: &str = "SM2-SM3";
/// Signer's distinguishing identifier (GM/T 0009-2012 default), part of `Z_A`.
pub const DISTINGUISHING_ID: &str = "1234567812345678";

/// SM3 digest of `data`.
pub fn sm3(data: &[u8]) -> [u8; 32] {
    Sm3::digest(data).into()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Decodes lowercase hex only (an uppercase digit would be a second spelling of the same bytes).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The canonical compact form of a JSON value: object keys sorted by their UTF-8 bytes, no
/// whitespace, strings and numbers as serde_json writes them. What is signed.
pub fn canonical_compact(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, None, 0);
    out
}

/// The canonical layout of a file: as [`canonical_compact`], with two-space indentation and
/// a trailing newline.
pub fn canonical_pretty(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, Some(2), 0);
    out.push('\n');
    out
}

fn write_value(out: &mut String, v: &Value, indent: Option<usize>, depth: usize) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write_value(out, &m[*k], indent, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_value(out, x, indent, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Why a report could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The provider's key is unusable (for the built-in provider: the Secret's PEM).
    #[error("signing key ({provider}): {message}")]
    Key {
        /// The provider, as it describes itself.
        provider: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The report could not be serialised.
    #[error("cannot serialise the report: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Signs with the platform's evidence key, which it holds and never hands out. The
/// built-in [`PemKeyProvider`] holds a PKCS#8 key from a Kubernetes Secret; a cipher machine
/// (密码机) or a KMS implements the same calls. Calls may block (a network or device
/// round trip): asynchronous callers run [`SigningKeyProvider::sign`] on a blocking thread.
pub trait SigningKeyProvider: Send + Sync {
    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`): what assessors verify with.
    fn public_key_pem(&self) -> Result<String, SignError>;
    /// SM2 signature (`r ‖ s`, 64 bytes) of `message` with [`DISTINGUISHING_ID`]: the
    /// signer computes `e = SM3(Z_A ‖ message)` itself.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError>;
    /// Where the key is, for messages (never the key itself).
    fn describe(&self) -> String;
}

/// The built-in provider: an SM2 private key in PKCS#8 PEM (`openssl genpkey -algorithm SM2`,
/// or `govcloud-operator evidence-key`), as mounted or read from the platform's Secret.
pub struct PemKeyProvider {
    key: SigningKey,
    source: String,
}

impl PemKeyProvider {
    /// Reads a PKCS#8 PEM SM2 private key; `source` says where it came from (for messages).
    pub fn from_pem(pem: &str, source: &str) -> Result<PemKeyProvider, SignError> {
        let bad = |message: String| SignError::Key {
            provider: source.to_string(),
            message,
        };
        let secret = sm2::SecretKey::from_pkcs8_pem(pem).map_err(|e| {
            bad(format!(
                "not an SM2 private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----): {e}; create one with `govcloud-operator evidence-key` or `openssl genpkey -algorithm SM2`"
            ))
        })?;
        let key = SigningKey::new(DISTINGUISHING_ID, &secret).map_err(|e| bad(format!("unusable SM2 key: {e}")))?;
        Ok(PemKeyProvider {
            key,
            source: source.to_string(),
        })
    }

    /// A new random key pair: (private PKCS#8 PEM, public SPKI PEM).
    pub fn generate() -> Result<(String, String), SignError> {
        let bad = |message: String| SignError::Key {
            provider: "new key".into(),
            message,
        };
        let secret =
            sm2::SecretKey::try_generate().map_err(|e| bad(format!("the system's random source failed: {e}")))?;
        let private = secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| bad(format!("cannot encode the private key: {e}")))?;
        let public = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| bad(format!("cannot encode the public key: {e}")))?;
        Ok((private.to_string(), public))
    }
}

impl SigningKeyProvider for PemKeyProvider {
    fn public_key_pem(&self) -> Result<String, SignError> {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| SignError::Key {
                provider: self.describe(),
                message: format!("cannot encode the public key: {e}"),
            })
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        use sm2::dsa::signature::Signer;
        let sig: Signature = self.key.try_sign(message).map_err(|e| SignError::Key {
            provider: self.describe(),
            message: format!("signing failed: {e}"),
        })?;
        let bytes = sig.to_bytes();
        let mut out = [0u8; 64];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    fn describe(&self) -> String {
        self.source.clone()
    }
}

/// A public key an assessor verifies with.
#[derive(Clone, Debug)]
pub struct PublicKey {
    key: VerifyingKey,
    id: String,
}

impl PublicKey {
    /// Reads an SPKI PEM SM2 public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<PublicKey, VerifyError> {
        let pk = sm2::PublicKey::from_public_key_pem(pem.trim()).map_err(|e| VerifyError::Key(e.to_string()))?;
        let der = pk.to_public_key_der().map_err(|e| VerifyError::Key(e.to_string()))?;
        let key = VerifyingKey::new(DISTINGUISHING_ID, pk).map_err(|e| VerifyError::Key(e.to_string()))?;
        Ok(PublicKey {
            key,
            id: key_id(der.as_bytes()),
        })
    }

    /// The key id written into signatures: SM3 of the DER public key, first 16 hex digits.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `sig` (`r ‖ s`) is this key's SM2 signature of `message`.
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        Signature::from_slice(sig).is_ok_and(|s| self.key.verify(message, &s).is_ok())
    }
}

fn key_id(spki_der: &[u8]) -> String {
    hex(&sm3(spki_der)[..8])
}

/// The signature block of a signed report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignatureBlock {
    /// [`ALGORITHM`].
    pub algorithm: String,
    /// [`DISTINGUISHING_ID`].
    pub distinguishing_id: String,
    /// [`PublicKey::id`] of the signing key.
    pub key_id: String,
    /// Hex of the canonical compact `report` (what was signed), SM3.
    pub digest: String,
    /// `r ‖ s`, 128 lowercase hex digits.
    pub value: String,
}

/// Signs `report` (any JSON) with `provider`: returns the envelope as a JSON value.
pub fn sign_value(report: &Value, provider: &dyn SigningKeyProvider) -> Result<Value, SignError> {
    let message = canonical_compact(report);
    let public = provider.public_key_pem()?;
    let key = PublicKey::from_pem(&public).map_err(|e| SignError::Key {
        provider: provider.describe(),
        message: e.to_string(),
    })?;
    let sig = provider.sign(message.as_bytes())?;
    let block = SignatureBlock {
        algorithm: ALGORITHM.into(),
        distinguishing_id: DISTINGUISHING_ID.into(),
        key_id: key.id().to_string(),
        digest: hex(&sm3(message.as_bytes())),
        value: hex(&sig),
    };
    Ok(serde_json::json!({"report": report, "signature": serde_json::to_value(block)?}))
}

/// Why a report file does not verify. Each says what it means for the assessor.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The public key file is not an SM2 public key.
    #[error(
        "the public key is not an SM2 public key in SPKI PEM (-----BEGIN PUBLIC KEY-----): {0}; ask the platform for its evidence public key"
    )]
    Key(String),
    /// Not a report file at all.
    #[error("not a signed evidence report: {0}")]
    Malformed(String),
    /// Parses, but its bytes are not the canonical layout: edited or reformatted after signing.
    #[error(
        "the file was changed after signing: its bytes are not the layout the platform signed (edited, reformatted or re-encoded); ask the platform for the original"
    )]
    NotCanonical,
    /// Signed by another key.
    #[error(
        "signed with key {found}, not with the given public key ({expected}); verify with the public key the report names, obtained from the platform"
    )]
    WrongKey {
        /// Key id in the file.
        found: String,
        /// Id of the key given.
        expected: String,
    },
    /// The signature does not match the content.
    #[error("the signature does not match the report's content: the report was altered after signing")]
    BadSignature,
}

/// What verifies: the report content and its key id.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    /// The signed report.
    pub report: Value,
    /// The signature block.
    pub signature: SignatureBlock,
}

impl Verified {
    /// One line for people: what was signed, by which key, for whom and what it says.
    pub fn summary(&self, file: &str) -> String {
        let r = &self.report;
        format!(
            "{file} verifies: signed {} by key {}; agency {} ({}), level {}, period {} to {}; {} controls: {} met, {} missing, {} failing",
            self.signature.algorithm,
            self.signature.key_id,
            r["agency"]["name"].as_str().unwrap_or_default(),
            r["agency"]["displayName"].as_str().unwrap_or_default(),
            r["agency"]["securityLevel"],
            r["periodStart"].as_str().unwrap_or_default(),
            r["periodEnd"].as_str().unwrap_or_default(),
            r["summary"]["controls"],
            r["summary"]["met"],
            r["summary"]["missing"],
            r["summary"]["failing"],
        )
    }
}

/// Verifies a signed envelope (already parsed) under `key`.
pub fn verify_envelope(envelope: &Value, key: &PublicKey) -> Result<Verified, VerifyError> {
    let obj = envelope
        .as_object()
        .ok_or_else(|| VerifyError::Malformed("the top level is not a JSON object".into()))?;
    if obj.len() != 2 {
        return Err(VerifyError::Malformed(
            "the top level must hold exactly `report` and `signature`".into(),
        ));
    }
    let report = obj
        .get("report")
        .ok_or_else(|| VerifyError::Malformed("no `report`".into()))?;
    let block: SignatureBlock = obj
        .get("signature")
        .cloned()
        .ok_or_else(|| VerifyError::Malformed("no `signature`".into()))
        .and_then(|s| serde_json::from_value(s).map_err(|e| VerifyError::Malformed(format!("signature: {e}"))))?;
    if block.algorithm != ALGORITHM || block.distinguishing_id != DISTINGUISHING_ID {
        return Err(VerifyError::Malformed(format!(
            "signature: algorithm {:?} with identifier {:?}; this tool verifies {ALGORITHM} with {DISTINGUISHING_ID:?}",
            block.algorithm, block.distinguishing_id
        )));
    }
    if block.key_id != key.id() {
        return Err(VerifyError::WrongKey {
            found: block.key_id.clone(),
            expected: key.id().to_string(),
        });
    }
    let message = canonical_compact(report);
    let sig = unhex(&block.value)
        .filter(|s| s.len() == 64)
        .ok_or(VerifyError::BadSignature)?;
    if unhex(&block.digest).as_deref() != Some(&sm3(message.as_bytes())[..]) || !key.verifies(message.as_bytes(), &sig)
    {
        return Err(VerifyError::BadSignature);
    }
    Ok(Verified {
        report: report.clone(),
        signature: block,
    })
}

/// Verifies the JSON form of a signed report: canonical bytes, then the signature.
pub fn verify_json(bytes: &[u8], key: &PublicKey) -> Result<Verified, VerifyError> {
    let text = std::str::from_utf8(bytes).map_err(|_| VerifyError::Malformed("not UTF-8 text".into()))?;
    let value: Value = serde_json::from_str(text).map_err(|e| VerifyError::Malformed(format!("not JSON: {e}")))?;
    if canonical_pretty(&value) != text {
        return Err(VerifyError::NotCanonical);
    }
    verify_envelope(&value, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm2::dsa::signature::hazmat::PrehashVerifier;

    fn unhex_upper(s: &str) -> Vec<u8> {
        unhex(&s.to_lowercase()).unwrap_or_else(|| panic!("bad hex {s}"))
    }

    /// GB/T 32905-2016 Appendix A: examples 1 and 2.
    #[test]
    fn sm3_standard_vectors() {
        assert_eq!(
            hex(&sm3(b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_eq!(
            hex(&sm3(&b"abcd".repeat(16))),
            "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
        );
    }

    /// GM/T 0003.5-2012 (GB/T 32918.5-2017) example on the recommended curve: the public
    /// key of the example private key, `e = SM3(Z_A ‖ M)`, and the example signature
    /// (r, s), made with the example's k, verify here.
    #[test]
    fn sm2_standard_example_verifies() {
        let d = unhex_upper("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8");
        let sk = SigningKey::from_slice(DISTINGUISHING_ID, &d).unwrap_or_else(|e| panic!("{e}"));
        let public = sk.verifying_key().to_sec1_bytes();
        assert_eq!(
            hex(&public),
            "04\
             09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020\
             ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
        );
        let sig = unhex_upper(
            "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3\
             B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA",
        );
        let sig = Signature::from_slice(&sig).unwrap_or_else(|e| panic!("{e}"));
        assert!(sk.verifying_key().verify(b"message digest", &sig).is_ok());
        // The digest the standard lists: e = SM3(Z_A ‖ M).
        let e = unhex_upper("F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640");
        assert!(sk.verifying_key().verify_prehash(&e, &sig).is_ok());
        // Another message, or another identifier, does not verify.
        assert!(sk.verifying_key().verify(b"message digesT", &sig).is_err());
        let other = VerifyingKey::from_sec1_bytes("ALICE123@YAHOO.COM", &public).unwrap_or_else(|e| panic!("{e}"));
        assert!(other.verify(b"message digest", &sig).is_err());
    }

    #[test]
    fn sign_verify_round_trip_through_pem() {
        let (private, public) = PemKeyProvider::generate().unwrap_or_else(|e| panic!("{e}"));
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        let p = PemKeyProvider::from_pem(&private, "test").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.public_key_pem().unwrap_or_default(), public);
        let key = PublicKey::from_pem(&public).unwrap_or_else(|e| panic!("{e}"));
        let sig = p.sign(b"hello").unwrap_or_else(|e| panic!("{e}"));
        assert!(key.verifies(b"hello", &sig));
        assert!(!key.verifies(b"hellO", &sig));
        // A second key does not verify the first key's signature.
        let (_, other) = PemKeyProvider::generate().unwrap_or_else(|e| panic!("{e}"));
        let other = PublicKey::from_pem(&other).unwrap_or_else(|e| panic!("{e}"));
        assert!(!other.verifies(b"hello", &sig));
        assert_ne!(other.id(), key.id());
        // A bad PEM says what to do.
        let e = PemKeyProvider::from_pem("nope", "Secret x")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("Secret x") && e.contains("genpkey"), "{e}");
    }

    #[test]
    fn canonical_forms_sort_keys_and_fix_layout() {
        let v: Value = serde_json::from_str(r#"{"b":[1,{"y":"é","x":null}],"a":{},"c":[]}"#).unwrap_or_default();
        assert_eq!(canonical_compact(&v), r#"{"a":{},"b":[1,{"x":null,"y":"é"}],"c":[]}"#);
        assert_eq!(
            canonical_pretty(&v),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    {\n      \"x\": null,\n      \"y\": \"é\"\n    }\n  ],\n  \"c\": []\n}\n"
        );
        let back: Value = serde_json::from_str(&canonical_pretty(&v)).unwrap_or_default();
        assert_eq!(back, v);
        assert_eq!(unhex("0aff"), Some(vec![10, 255]));
        assert_eq!(unhex("0AFF"), None, "uppercase is a second spelling");
    }
}
