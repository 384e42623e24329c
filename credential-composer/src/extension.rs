//! The `TwiProvenance` X.509 extension: the signed credential-provenance statement and its inclusion
//! proof, so a relying party can check the record and that it was logged without contacting the log.
//!
//! ```asn1
//! TwiProvenance ::= SEQUENCE {
//!   version    INTEGER { v1(1) },
//!   statement  OCTET STRING,             -- COSE_Sign1 Signed Statement; its exact bytes are the log entry
//!   proof      CHOICE {
//!     tlogProof   [0] IMPLICIT UTF8String,    -- c2sp.org/tlog-proof@v1
//!     coseReceipt [1] IMPLICIT OCTET STRING   -- COSE Receipt, vds RFC9162_SHA256
//!   } OPTIONAL
//! }
//! ```
//!
//! The extension is non-critical under a configurable OID ([`DEFAULT_PROVENANCE_OID`] by default).
//! Decoding is DER-strict (a re-encoding must give back the input) and bounded
//! ([`MAX_PROVENANCE_EXTENSION`]).

use const_oid::ObjectIdentifier;
use der::asn1::{OctetStringRef, Utf8StringRef};
use der::{Choice, Decode as _, Encode as _, Sequence};

use crate::statement::MAX_STATEMENT;
use crate::tlog::MAX_TLOG_PROOF;

/// Default extension OID: `1.3.6.1.4.1.<PEN>.1.1` with PEN 32473, the documentation PEN of RFC 5612,
/// as a placeholder until the project has its own PEN. Never 1.3.101.75 (RFC 9162's).
pub const DEFAULT_PROVENANCE_OID: &str = "1.3.6.1.4.1.32473.1.1";
/// [`DEFAULT_PROVENANCE_OID`] as an OID.
pub const DEFAULT_PROVENANCE_OBJECT_ID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap(DEFAULT_PROVENANCE_OID);
/// The only version.
pub const TWI_PROVENANCE_VERSION: u8 = 1;
/// Largest extnValue accepted: a statement, a proof and DER headers.
pub const MAX_PROVENANCE_EXTENSION: usize = MAX_STATEMENT + MAX_TLOG_PROOF + 64;

/// Where the statement's inclusion in the log is proven.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofForm {
    /// A c2sp.org/tlog-proof@v1 text (index, audit path, signed checkpoint).
    TlogProof(String),
    /// A COSE Receipt (draft-ietf-cose-merkle-tree-proofs, vds RFC9162_SHA256). Carried, not yet
    /// produced or verified by this crate.
    CoseReceipt(Vec<u8>),
}

/// The extension's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwiProvenance {
    /// The COSE_Sign1 statement, exactly as logged.
    pub statement: Vec<u8>,
    pub proof: Option<ProofForm>,
}

/// Why a `TwiProvenance` extnValue was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    #[error("TwiProvenance is {len} bytes, more than {max}")]
    TooLarge { len: usize, max: usize },
    #[error("TwiProvenance DER: {detail}")]
    Der { detail: String },
    #[error("TwiProvenance version {got}, want 1")]
    Version { got: u8 },
    #[error("TwiProvenance is not in DER (re-encoding differs)")]
    NotDer,
    #[error("TwiProvenance {field} is {len} bytes, more than {max}")]
    FieldTooLarge {
        field: &'static str,
        len: usize,
        max: usize,
    },
    /// Encoding failed (a field beyond DER's limits).
    #[error("encoding TwiProvenance: {detail}")]
    Encode { detail: String },
}

#[derive(Clone, Debug, Eq, PartialEq, Choice)]
enum ProofAsn1<'a> {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    TlogProof(Utf8StringRef<'a>),
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT")]
    CoseReceipt(OctetStringRef<'a>),
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TwiProvenanceAsn1<'a> {
    version: u8,
    statement: OctetStringRef<'a>,
    proof: Option<ProofAsn1<'a>>,
}

impl TwiProvenance {
    /// The DER extnValue. Empty only if a field is beyond DER's size limits (gigabytes), which
    /// [`TwiProvenance::try_to_der`] reports.
    pub fn to_der(&self) -> Vec<u8> {
        self.try_to_der().unwrap_or_default()
    }

    /// The DER extnValue.
    ///
    /// # Errors
    /// [`ExtensionError::Encode`].
    pub fn try_to_der(&self) -> Result<Vec<u8>, ExtensionError> {
        let enc = |e: der::Error| ExtensionError::Encode {
            detail: e.to_string(),
        };
        let proof = match &self.proof {
            None => None,
            Some(ProofForm::TlogProof(s)) => {
                Some(ProofAsn1::TlogProof(Utf8StringRef::new(s).map_err(enc)?))
            }
            Some(ProofForm::CoseReceipt(b)) => {
                Some(ProofAsn1::CoseReceipt(OctetStringRef::new(b).map_err(enc)?))
            }
        };
        TwiProvenanceAsn1 {
            version: TWI_PROVENANCE_VERSION,
            statement: OctetStringRef::new(&self.statement).map_err(enc)?,
            proof,
        }
        .to_der()
        .map_err(enc)
    }

    /// Parses an extnValue.
    ///
    /// # Errors
    /// [`ExtensionError`] naming the problem.
    pub fn from_der(der: &[u8]) -> Result<Self, ExtensionError> {
        if der.len() > MAX_PROVENANCE_EXTENSION {
            return Err(ExtensionError::TooLarge {
                len: der.len(),
                max: MAX_PROVENANCE_EXTENSION,
            });
        }
        let asn1 = TwiProvenanceAsn1::from_der(der).map_err(|e| ExtensionError::Der {
            detail: e.to_string(),
        })?;
        if asn1.version != TWI_PROVENANCE_VERSION {
            return Err(ExtensionError::Version { got: asn1.version });
        }
        // der decodes DER strictly for these types; keep the definition explicit.
        if asn1.to_der().ok().as_deref() != Some(der) {
            return Err(ExtensionError::NotDer);
        }
        let statement = asn1.statement.as_bytes();
        if statement.len() > MAX_STATEMENT {
            return Err(ExtensionError::FieldTooLarge {
                field: "statement",
                len: statement.len(),
                max: MAX_STATEMENT,
            });
        }
        let proof = match asn1.proof {
            None => None,
            Some(ProofAsn1::TlogProof(s)) => {
                if s.as_str().len() > MAX_TLOG_PROOF {
                    return Err(ExtensionError::FieldTooLarge {
                        field: "tlogProof",
                        len: s.as_str().len(),
                        max: MAX_TLOG_PROOF,
                    });
                }
                Some(ProofForm::TlogProof(s.as_str().to_owned()))
            }
            Some(ProofAsn1::CoseReceipt(b)) => Some(ProofForm::CoseReceipt(b.as_bytes().to_vec())),
        };
        Ok(TwiProvenance {
            statement: statement.to_vec(),
            proof,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn round_trip_each_form() {
        for proof in [
            None,
            Some(ProofForm::TlogProof(
                "c2sp.org/tlog-proof@v1\nindex 0\n\nx".into(),
            )),
            Some(ProofForm::CoseReceipt(vec![0xd2, 0x84])),
        ] {
            let ext = TwiProvenance {
                statement: vec![0xd2, 0x84, 1, 2, 3],
                proof,
            };
            let der = ext.to_der();
            assert_eq!(TwiProvenance::from_der(&der).unwrap(), ext);
        }
    }

    #[test]
    fn exact_encoding() {
        let ext = TwiProvenance {
            statement: vec![0xaa],
            proof: Some(ProofForm::TlogProof("p".into())),
        };
        // SEQUENCE { INTEGER 1, OCTET STRING aa, [0] IMPLICIT UTF8String "p" }
        assert_eq!(
            ext.to_der(),
            [0x30, 0x09, 0x02, 0x01, 0x01, 0x04, 0x01, 0xaa, 0x80, 0x01, b'p']
        );
        let ext = TwiProvenance {
            statement: vec![0xaa],
            proof: Some(ProofForm::CoseReceipt(vec![0xbb])),
        };
        assert_eq!(ext.to_der()[8], 0x81);
    }

    #[test]
    fn refuses() {
        let good = [0x30, 0x06, 0x02, 0x01, 0x01, 0x04, 0x01, 0xaa];
        assert!(TwiProvenance::from_der(&good).is_ok());
        let mut v2 = good;
        v2[4] = 2;
        assert!(matches!(
            TwiProvenance::from_der(&v2),
            Err(ExtensionError::Version { got: 2 })
        ));
        // Trailing data, unknown tag [2], truncated, long-form length where short suffices.
        let trailing = [&good[..], &[0]].concat();
        assert!(TwiProvenance::from_der(&trailing).is_err());
        let bad_tag = [
            0x30, 0x09, 0x02, 0x01, 0x01, 0x04, 0x01, 0xaa, 0x82, 0x01, b'p',
        ];
        assert!(TwiProvenance::from_der(&bad_tag).is_err());
        assert!(TwiProvenance::from_der(&good[..7]).is_err());
        let long_len = [0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x04, 0x01, 0xaa];
        assert!(TwiProvenance::from_der(&long_len).is_err());
        assert!(matches!(
            TwiProvenance::from_der(&vec![0; MAX_PROVENANCE_EXTENSION + 1]),
            Err(ExtensionError::TooLarge { .. })
        ));
    }
}
