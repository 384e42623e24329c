//! The network seam: one HTTP GET with a size cap and a timeout, returning the body and the few
//! response headers collateral needs (Intel's issuer chains). Tests and callers without the `fetch`
//! feature bring their own implementation.

use std::time::Duration;

use super::CollateralError;

/// Timeout of one request when the caller does not choose one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A successful (2xx) response: the body and the headers asked for that were present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub body: Vec<u8>,
    /// `(name as asked, value)`; values that are not visible ASCII are left out.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The value of header `name` (ASCII case-insensitive), if it was asked for and sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP GET. Implementations must refuse non-2xx statuses ([`CollateralError::Status`]) and bodies
/// longer than `max_len` ([`CollateralError::Http`]), and give up after `timeout`.
///
/// Blocking: async callers run it on a blocking thread.
pub trait Fetch: Send + Sync + std::fmt::Debug {
    /// # Errors
    /// [`CollateralError::Http`] for transport failures, timeouts and oversized bodies;
    /// [`CollateralError::Status`] for a non-2xx answer.
    fn get(
        &self,
        url: &str,
        headers: &[&str],
        max_len: usize,
        timeout: Duration,
    ) -> Result<Response, CollateralError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup_ignores_case() {
        let r = Response {
            body: Vec::new(),
            headers: vec![("TCB-Info-Issuer-Chain".into(), "x".into())],
        };
        assert_eq!(r.header("tcb-info-issuer-chain"), Some("x"));
        assert_eq!(r.header("SGX-TCB-Info-Issuer-Chain"), None);
    }
}
