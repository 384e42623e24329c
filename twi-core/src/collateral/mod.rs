//! Where verification collateral comes from: offline bundles, an on-disk cache, and opt-in online
//! fetching from Intel PCS / a PCCS (TDX) and AMD KDS (SEV-SNP), behind one [`Fetch`] seam.
//!
//! Nothing here is trusted. A fetched or cached item is only checked to be what it claims to be (JSON
//! with the right envelope and FMSPC, a DER CRL of the right CA, a PEM chain) so that junk is never
//! cached; the verifiers ([`crate::tdx::TdxVerifier`], [`crate::snp::Verifier`]) still check every
//! signature and chain to a pinned root. A hostile network or PCCS can make attestation fail, never
//! pass.
//!
//! * [`TdxCollateralSource`] — TDX collateral for one platform ([`PlatformKey`]: FMSPC and PCK CA,
//!   read from the quote's PCK certificate), in the [`crate::tdx::Collateral`] shape, from (a) an
//!   offline bundle directory, else (b) the cache, else (c) Intel PCS / a PCCS when configured. It
//!   refetches [`RefreshPolicy::refresh_before_seconds`] before the earliest `nextUpdate`, serves
//!   stale collateral only within [`RefreshPolicy::grace_seconds`] (and says so in [`Served::stale`]),
//!   and refuses past it with [`CollateralError::Expired`] (category `collateral-expired`).
//! * [`kds::KdsClient`] — AMD KDS: VCEK by hwID and TCB, the ASK/ASVK + ARK bundle, the CRL.
//! * [`write_atomic`] — the cache's only way to write: a temporary file, fsync, rename.
//!
//! Time is always the caller's `now` (Unix seconds); the wall clock is never read here.
//!
//! Intel PCS API v4 (what a PCCS serves under its own base URL):
//! `GET /tdx/certification/v4/tcb?fmspc=…` (header `TCB-Info-Issuer-Chain`),
//! `GET /tdx/certification/v4/qe/identity` (`SGX-Enclave-Identity-Issuer-Chain`),
//! `GET /sgx/certification/v4/pckcrl?ca=platform|processor&encoding=der` (`SGX-PCK-CRL-Issuer-Chain`);
//! the issuer chains are URL-encoded PEM. The Intel SGX Root CA CRL comes from
//! [`INTEL_ROOT_CA_CRL_URL`] (Intel PCS) or `/sgx/certification/v4/rootcacrl` (a PCCS).

mod cache;
mod error;
mod fetch;
mod freshness;
pub mod kds;
mod pck;
mod pcs;
mod tdx;
#[cfg(feature = "fetch")]
mod ureq_fetch;

pub use cache::write_atomic;
pub use error::CollateralError;
pub use fetch::{Fetch, Response, DEFAULT_TIMEOUT};
pub use freshness::{collateral_times, CollateralTimes, RefreshPolicy, Stale};
pub use pck::{PckCa, PlatformKey};
pub use pcs::{
    decode_issuer_chain, normalize_crl, PcsUrls, ENCLAVE_IDENTITY_ISSUER_CHAIN, INTEL_PCS_URL,
    INTEL_ROOT_CA_CRL_URL, PCK_CRL_ISSUER_CHAIN, SGX_TCB_INFO_ISSUER_CHAIN, TCB_INFO_ISSUER_CHAIN,
};
pub use tdx::{Origin, PcsConfig, Served, TdxCollateralSource, TdxSourceConfig, MAX_PLATFORMS};
#[cfg(feature = "fetch")]
pub use ureq_fetch::UreqFetch;
