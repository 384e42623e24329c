//! [`Fetch`] over `ureq` (feature `fetch`): HTTPS with rustls and the webpki roots.

use std::time::Duration;

use super::{CollateralError, Fetch, Response};

/// The production [`Fetch`]: a blocking `ureq` GET per call.
#[derive(Clone, Copy, Debug, Default)]
pub struct UreqFetch;

impl Fetch for UreqFetch {
    fn get(
        &self,
        url: &str,
        headers: &[&str],
        max_len: usize,
        timeout: Duration,
    ) -> Result<Response, CollateralError> {
        let http = |detail: String| CollateralError::Http {
            url: url.to_owned(),
            detail,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent.get(url).call().map_err(|e| http(e.to_string()))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(CollateralError::Status {
                url: url.to_owned(),
                status,
            });
        }
        let wanted = headers
            .iter()
            .filter_map(|name| {
                let v = resp.headers().get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), v.to_owned()))
            })
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(u64::try_from(max_len).unwrap_or(u64::MAX))
            .read_to_vec()
            .map_err(|e| http(e.to_string()))?;
        Ok(Response {
            body,
            headers: wanted,
        })
    }
}
