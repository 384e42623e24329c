//! The one mapping from verifier errors to gRPC status codes.
//!
//! SPIRE hands a plugin's status to the agent with its code kept (protocol doc §7.1), so the code is the
//! agent operator's first clue: `InvalidArgument` means "your agent sent something broken",
//! `PermissionDenied` "your VM was checked and refused", `Unavailable` "the server lacks collateral right
//! now, retry", `Internal` "the server is at fault". Every message names the reason category of
//! `twi_core::Error::category` in parentheses, so logs, the CLI and test vectors speak the same words.

use tonic::Status;
use twi_core::ErrorClass;

/// What the class means for the peer, in the message prefix.
fn verdict(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Malformed => "malformed",
        ErrorClass::Refused => "refused",
        ErrorClass::Unavailable => "cannot be verified now",
        _ => "not verified (internal error)",
    }
}

/// Maps a verifier error to the status the agent receives, e.g.
/// `PermissionDenied "snp evidence refused (policy-debug): policy refused: policy.debug: got true, …"`.
///
/// Malformed → `InvalidArgument`, refused → `PermissionDenied`, unavailable → `Unavailable`, internal (and
/// any class added later) → `Internal`: an unknown class must never become a softer code.
pub fn to_status(e: &twi_core::Error) -> Status {
    to_status_for("snp", e)
}

/// As [`to_status`] for evidence of TEE `tee` (`snp`, `tdx`): the message starts `<tee> evidence …`, so
/// the agent operator sees which verifier refused it.
pub fn to_status_for(tee: &str, e: &twi_core::Error) -> Status {
    let class = e.class();
    let message = format!("{tee} evidence {} ({}): {e}", verdict(class), e.category());
    match class {
        ErrorClass::Malformed => Status::invalid_argument(message),
        ErrorClass::Refused => Status::permission_denied(message),
        ErrorClass::Unavailable => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use twi_core::error::Violation;
    use twi_core::Error;

    #[test]
    fn each_class_has_its_code_and_the_message_names_the_category() {
        let cases = [
            (
                Error::Malformed {
                    what: "attestation report",
                    detail: "1000 bytes, want 1184".into(),
                },
                Code::InvalidArgument,
                "snp evidence malformed (malformed): malformed attestation report: 1000 bytes",
            ),
            (
                Error::Policy {
                    violations: vec![Violation {
                        field: twi_core::error::DEBUG_POLICY_FIELD,
                        got: "true".into(),
                        want: "false".into(),
                    }],
                },
                Code::PermissionDenied,
                "snp evidence refused (policy-debug): policy refused: policy.debug: got true",
            ),
            (
                Error::Nonce {
                    got: "00".into(),
                    want: "11".into(),
                },
                Code::PermissionDenied,
                "snp evidence refused (nonce): REPORT_DATA mismatch",
            ),
            (
                Error::MissingCertificate { cert: "VCEK/VLEK" },
                Code::Unavailable,
                "(missing-certificate): missing certificate: VCEK/VLEK",
            ),
            (
                Error::Internal {
                    detail: "bug".into(),
                },
                Code::Internal,
                "(internal): internal error: bug",
            ),
        ];
        for (err, code, text) in cases {
            let st = to_status(&err);
            assert_eq!(st.code(), code, "{err}");
            assert!(
                st.message().contains(text),
                "{:?} lacks {text:?}",
                st.message()
            );
            let tdx = to_status_for("tdx", &err);
            assert_eq!(tdx.code(), code);
            assert!(
                tdx.message().starts_with("tdx evidence "),
                "{}",
                tdx.message()
            );
        }
    }
}
