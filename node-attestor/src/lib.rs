//! SPIRE NodeAttestor plugins for confidential VMs.
//!
//! The agent half (`twi-agent-nodeattestor`) runs inside the confidential VM and produces fresh TEE
//! evidence bound to the server's nonce and to a per-instance key; the server half
//! (`twi-server-nodeattestor`) verifies that evidence to the vendor's roots with `twi-core`, applies
//! policy, and tells SPIRE the agent's ID and selectors. [`wire`] holds what both halves share.

pub mod agent;
pub mod server;
pub mod status;
pub mod wire;

/// Fuzzing entry point for the server's `plugin_data` (the `snp { … }` and `tdx { … }` appraisal
/// policies, an inline `policy { … }` document, the `attestation_results` block): HCL parse into
/// [`server::Config`], then the whole
/// validation of Configure/Validate — unless the configuration names a file or directory, because
/// validation reads those and a fuzzer must not make the plugin read arbitrary paths. Such inputs are
/// only parsed. Must never panic, whatever `data` is.
#[doc(hidden)]
pub fn fuzz_server_config(data: &[u8]) {
    let Ok(hcl) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = twi_plugin::from_hcl::<server::Config>(hcl) else {
        return;
    };
    if !names_a_path(&cfg) {
        let _ = server::config::build(&twi_plugin::CoreConfig::new("example.org"), hcl);
    }
}

/// Whether validating `cfg` would touch the file system. Every struct is destructured without `..`, so
/// a new configuration field does not compile here until someone says whether it is a path.
fn names_a_path(cfg: &server::Config) -> bool {
    let server::Config {
        plugin_name: _,
        can_reattest: _,
        nonce_len: _,
        snp,
        tdx,
        attestation_results,
        policy_file,
        policy: _,
    } = cfg;
    let snp_paths = snp.as_ref().is_some_and(|s| {
        let server::SnpConfig {
            allow_debug: _,
            allow_migrate_ma: _,
            minimum_tcb: _,
            allowed_measurements: _,
            allowed_host_data: _,
            allowed_id_key_digests: _,
            allowed_vmpls: _,
            minimum_guest_svn: _,
            trusted_roots,
            disable_amd_roots: _,
            simulated_roots,
            cert_dir,
            crl_paths,
            kds,
        } = s;
        let kds_path = kds.as_ref().is_some_and(|k| {
            let server::KdsConfig {
                url: _,
                cache_dir,
                timeout_seconds: _,
            } = k;
            !cache_dir.as_os_str().is_empty()
        });
        !trusted_roots.is_empty()
            || !simulated_roots.is_empty()
            || cert_dir.is_some()
            || !crl_paths.is_empty()
            || kds_path
    });
    let tdx_paths = tdx.as_ref().is_some_and(|t| {
        let server::TdxConfig {
            collateral_dir,
            // URLs: validated as text; nothing is fetched before an attestation needs collateral.
            pcs_url: _,
            root_ca_crl_url: _,
            cache_dir,
            fetch_timeout_seconds: _,
            collateral_refresh_before_seconds: _,
            collateral_grace_seconds: _,
            collateral_retry_seconds: _,
            allow_debug: _,
            allowed_tcb_statuses: _,
            allowed_advisory_ids: _,
            mrtd: _,
            rtmr0: _,
            rtmr1: _,
            rtmr2: _,
            rtmr3: _,
            mrconfigid: _,
            mrowner: _,
            mrownerconfig: _,
            xfam: _,
            td_attributes: _,
            trusted_roots,
            disable_intel_roots: _,
            simulated_roots,
        } = t;
        collateral_dir.is_some()
            || cache_dir.is_some()
            || !trusted_roots.is_empty()
            || !simulated_roots.is_empty()
    });
    let results_paths = attestation_results.as_ref().is_some_and(|r| {
        let server::AttestationResultsConfig {
            database,
            verifier_key_path,
            jwks_path,
            ear_validity_seconds: _,
        } = r;
        database
            .as_deref()
            .is_some_and(|d| d.trim().starts_with("sqlite://"))
            || verifier_key_path.is_some()
            || jwks_path.is_some()
    });
    policy_file.is_some() || snp_paths || tdx_paths || results_paths
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn parsed(hcl: &str) -> server::Config {
        twi_plugin::from_hcl(hcl).unwrap()
    }

    #[test]
    fn configs_naming_paths_are_only_parsed() {
        for hcl in [
            "snp {\n trusted_roots = [\"/x\"]\n}",
            "snp {\n cert_dir = \"/x\"\n}",
            "snp {\n kds {\n cache_dir = \"/x\"\n }\n}",
            "snp {\n crl_paths = [\"/x\"]\n}",
            "tdx {\n collateral_dir = \"/x\"\n}",
            "tdx {\n simulated_roots = [\"/x\"]\n}",
            "tdx {\n pcs_url = \"https://pccs.example\"\n cache_dir = \"/x\"\n}",
            "attestation_results {\n database = \"sqlite:///x/r.db\"\n}",
            "attestation_results {\n verifier_key_path = \"/x/k.pem\"\n}",
            "policy_file = \"/x/policy.hcl\"",
        ] {
            assert!(names_a_path(&parsed(hcl)), "{hcl}");
        }
        for hcl in [
            "",
            "nonce_len = 48\nsnp {\n allowed_vmpls = [0]\n kds {\n cache_dir = \"\"\n }\n}",
            "tdx {\n mrtd = [\"00\"]\n xfam {\n value = \"0x3\"\n mask = 3\n }\n}",
            "attestation_results {\n database = \"postgres://h/db\"\n}",
        ] {
            assert!(!names_a_path(&parsed(hcl)), "{hcl}");
            fuzz_server_config(hcl.as_bytes());
        }
    }
}
