//! The configured [`Verifier`] and the CRLs it was built with.
//!
//! The verifier keeps a cache of checked chains, so warm attestations cost one ECDSA verification: it
//! lives as long as the configuration. A CRL fetched from KDS after Configure cannot be added to a shared
//! verifier (`add_crl_der` takes `&mut`), so a new verifier with every CRL is built and swapped in; running
//! attestations keep the one they started with.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use twi_core::snp::{Product, TrustAnchors, Verifier};
use twi_core::Error;

/// How long to wait before asking KDS again for a product's CRL after an attempt.
pub(crate) const CRL_RETRY_SECS: i64 = 600;

#[derive(Debug)]
struct Crls {
    anchors: TrustAnchors,
    /// Keyed by origin (`file:<path>`, `product:<name>`); a product's entry is replaced on refresh.
    by_key: BTreeMap<String, (Option<Product>, Vec<u8>)>,
    /// Last KDS attempt per product (Unix seconds).
    attempts: HashMap<Product, i64>,
}

/// The verifier in use plus what it was built from.
#[derive(Debug)]
pub(crate) struct VerifierState {
    crls: Mutex<Crls>,
    current: RwLock<Arc<Verifier>>,
}

impl Default for VerifierState {
    fn default() -> Self {
        let anchors = TrustAnchors::amd();
        VerifierState {
            current: RwLock::new(Arc::new(Verifier::new(anchors.clone()))),
            crls: Mutex::new(Crls {
                anchors,
                by_key: BTreeMap::new(),
                attempts: HashMap::new(),
            }),
        }
    }
}

fn build(crls: &Crls) -> Result<Verifier, Error> {
    let mut v = Verifier::new(crls.anchors.clone());
    for (_, der) in crls.by_key.values() {
        v.add_crl_der(der)?;
    }
    Ok(v)
}

impl VerifierState {
    /// Adds a CRL (checked to parse) without rebuilding; used while building the configuration.
    ///
    /// # Errors
    ///
    /// `malformed` when `der` is not a CRL.
    pub(crate) fn insert(
        &mut self,
        key: String,
        product: Option<Product>,
        der: Vec<u8>,
    ) -> Result<(), Error> {
        Verifier::new(TrustAnchors::amd().without_amd()).add_crl_der(&der)?;
        let crls = self.crls.get_mut().unwrap_or_else(PoisonError::into_inner);
        crls.by_key.insert(key, (product, der));
        Ok(())
    }

    /// Whether a CRL for `product` (from a directory or KDS) is loaded.
    pub(crate) fn has_product(&self, product: Product) -> bool {
        let crls = self.crls.lock().unwrap_or_else(PoisonError::into_inner);
        crls.by_key.values().any(|(p, _)| *p == Some(product))
    }

    /// Sets the trust anchors and builds the first verifier.
    ///
    /// # Errors
    ///
    /// A CRL the verifier refuses (already checked by [`VerifierState::insert`], so not expected).
    pub(crate) fn finish(&mut self, anchors: TrustAnchors) -> Result<(), Error> {
        let crls = self.crls.get_mut().unwrap_or_else(PoisonError::into_inner);
        crls.anchors = anchors;
        let v = build(crls)?;
        *self
            .current
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(v);
        Ok(())
    }

    /// The verifier to use now.
    pub(crate) fn verifier(&self) -> Arc<Verifier> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether KDS may be asked for `product`'s CRL at `now` (rate limit), recording the attempt.
    pub(crate) fn may_fetch_crl(&self, product: Product, now: i64) -> bool {
        let mut crls = self.crls.lock().unwrap_or_else(PoisonError::into_inner);
        match crls.attempts.get(&product) {
            Some(last) if now.saturating_sub(*last) < CRL_RETRY_SECS => false,
            _ => {
                crls.attempts.insert(product, now);
                true
            }
        }
    }

    /// Installs a fetched CRL for `product` (replacing an older one) and swaps in a new verifier.
    ///
    /// # Errors
    ///
    /// `malformed` when `der` is not a CRL.
    pub(crate) fn replace_product_crl(&self, product: Product, der: Vec<u8>) -> Result<(), Error> {
        Verifier::new(TrustAnchors::amd().without_amd()).add_crl_der(&der)?;
        let mut crls = self.crls.lock().unwrap_or_else(PoisonError::into_inner);
        crls.by_key
            .insert(format!("product:{product}"), (Some(product), der));
        let v = build(&crls)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(v);
        Ok(())
    }
}
