//! TCB status of a TDX platform from Intel's TCB info and QE identity, by Intel's algorithm (Intel
//! QVL `TcbLevelCheck`, as ported by dcap-qvl `src/verify.rs` `evaluate_tdx_tcb`):
//!
//! 1. the first TCB level, in the TCB info's order, whose 16 SGX components and PCESVN are ≤ the PCK
//!    certificate's, and whose TDX components are ≤ TEE_TCB_SVN (components 0 and 1 skipped when
//!    TEE_TCB_SVN[1], the module major version, is non-zero: the module identity judges those);
//! 2. when TEE_TCB_SVN[1] > 0, the TDX module identity `TDX_<major in hex>`: its first level with
//!    ISVSVN ≤ TEE_TCB_SVN[0]; an OutOfDate/Revoked module degrades the platform status;
//! 3. the QE identity level of the QE's ISVSVN degrades it the same way;
//! 4. a TDX 1.5 report is evaluated again with TEE_TCB_SVN2 (the TCB after a TD-preserving module
//!    update): an out-of-date launch TCB with an up-to-date current one becomes TDRelaunchAdvised.
//!
//! No level found at step 1 or 2 is "TCB not supported" (`tcb-unsupported`).

use serde::{Deserialize, Serialize};

use super::collateral::{TcbInfo, TcbLevel};
use crate::Error;

/// Intel's TCB status of a platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TcbStatus {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
    /// TDX 1.5: the launch TCB is out of date, the current one is not — relaunch the TD.
    #[serde(rename = "TDRelaunchAdvised")]
    TdRelaunchAdvised,
    /// As `TdRelaunchAdvised`, with configuration needed.
    #[serde(rename = "TDRelaunchAdvisedConfigurationNeeded")]
    TdRelaunchAdvisedConfigurationNeeded,
}

impl TcbStatus {
    /// Intel's spelling, as in TCB info JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
            TcbStatus::TdRelaunchAdvised => "TDRelaunchAdvised",
            TcbStatus::TdRelaunchAdvisedConfigurationNeeded => {
                "TDRelaunchAdvisedConfigurationNeeded"
            }
        }
    }

    /// Degrades a platform status by a component's (module, QE): only OutOfDate and Revoked
    /// components change it (Intel QVL `convergeTcbStatusWithQeTcbStatus`).
    pub(crate) fn converge(self, component: TcbStatus) -> TcbStatus {
        use TcbStatus::*;
        match (component, self) {
            (Revoked, _) => Revoked,
            (OutOfDate, UpToDate | SWHardeningNeeded) => OutOfDate,
            (OutOfDate, ConfigurationNeeded | ConfigurationAndSWHardeningNeeded) => {
                OutOfDateConfigurationNeeded
            }
            _ => self,
        }
    }

    /// Launch TCB status `self`, current TCB status `current` (TDX 1.5).
    pub(crate) fn check_for_relaunch(self, current: TcbStatus) -> TcbStatus {
        use TcbStatus::*;
        let config = |s| {
            matches!(
                s,
                ConfigurationNeeded
                    | OutOfDateConfigurationNeeded
                    | ConfigurationAndSWHardeningNeeded
                    | TdRelaunchAdvisedConfigurationNeeded
            )
        };
        match (self, current) {
            (
                OutOfDate | OutOfDateConfigurationNeeded,
                UpToDate
                | SWHardeningNeeded
                | ConfigurationNeeded
                | ConfigurationAndSWHardeningNeeded,
            ) => {
                if config(self) || config(current) {
                    TdRelaunchAdvisedConfigurationNeeded
                } else {
                    TdRelaunchAdvised
                }
            }
            _ => self,
        }
    }
}

impl std::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status and the advisories that explain it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Evaluated {
    pub(crate) status: TcbStatus,
    pub(crate) advisory_ids: Vec<String>,
}

impl Evaluated {
    fn merge(&mut self, status: TcbStatus, advisories: &[String]) {
        self.status = self.status.converge(status);
        for a in advisories {
            if !self.advisory_ids.contains(a) {
                self.advisory_ids.push(a.clone());
            }
        }
    }
}

/// What of the platform the matching looks at.
pub(crate) struct PlatformSvns<'a> {
    pub(crate) sgx_components: &'a [u8; 16],
    pub(crate) pce_svn: u16,
}

fn unsupported(detail: String) -> Error {
    Error::TcbUnsupported { detail }
}

/// Step 1: the first platform level met by the PCK's SVNs and `tee_tcb_svn`.
fn platform_level<'a>(
    info: &'a TcbInfo,
    p: &PlatformSvns<'_>,
    tee_tcb_svn: &[u8; 16],
) -> Result<&'a TcbLevel, Error> {
    let skip = if tee_tcb_svn[1] > 0 { 2 } else { 0 };
    for level in &info.tcb_levels {
        let t = &level.tcb;
        if t.sgxtcbcomponents.len() != 16 || t.tdxtcbcomponents.len() != 16 {
            return Err(Error::malformed(
                "TCB info",
                format!(
                    "TCB level with {} SGX and {} TDX components, want 16 each",
                    t.sgxtcbcomponents.len(),
                    t.tdxtcbcomponents.len()
                ),
            ));
        }
        let sgx_ok = t
            .sgxtcbcomponents
            .iter()
            .zip(p.sgx_components)
            .all(|(need, have)| *have >= need.svn);
        let tdx_ok = t
            .tdxtcbcomponents
            .iter()
            .zip(tee_tcb_svn)
            .skip(skip)
            .all(|(need, have)| *have >= need.svn);
        if sgx_ok && p.pce_svn >= t.pcesvn && tdx_ok {
            return Ok(level);
        }
    }
    Err(unsupported(format!(
        "SGX components {:?}, PCESVN {}, TEE_TCB_SVN {} meet no TCB level of FMSPC {}",
        p.sgx_components,
        p.pce_svn,
        hex::encode(tee_tcb_svn),
        info.fmspc
    )))
}

/// Steps 1–2 for one TEE_TCB_SVN.
fn evaluate(
    info: &TcbInfo,
    p: &PlatformSvns<'_>,
    tee_tcb_svn: &[u8; 16],
) -> Result<Evaluated, Error> {
    let level = platform_level(info, p, tee_tcb_svn)?;
    let mut out = Evaluated {
        status: level.tcb_status,
        advisory_ids: level.advisory_ids.clone(),
    };
    if let Some(identity) = module_identity(info, tee_tcb_svn)? {
        let isvsvn = u16::from(tee_tcb_svn[0]);
        let module_level = identity
            .tcb_levels
            .iter()
            .find(|l| isvsvn >= l.tcb.isvsvn)
            .ok_or_else(|| {
                unsupported(format!(
                    "TDX module {} ISVSVN {isvsvn} is below every level of its identity",
                    identity.id
                ))
            })?;
        out.merge(module_level.tcb_status, &module_level.advisory_ids);
    }
    Ok(out)
}

/// The TDX module identity for TEE_TCB_SVN[1] (major version), when it is non-zero.
pub(crate) fn module_identity<'a>(
    info: &'a TcbInfo,
    tee_tcb_svn: &[u8; 16],
) -> Result<Option<&'a super::collateral::TdxModuleIdentity>, Error> {
    let major = tee_tcb_svn[1];
    if major == 0 {
        return Ok(None);
    }
    let want = format!("TDX_{major:02X}");
    info.tdx_module_identities
        .iter()
        .find(|m| m.id.eq_ignore_ascii_case(&want))
        .map(Some)
        .ok_or_else(|| unsupported(format!("no TDX module identity {want} in the TCB info")))
}

/// The platform's TCB status: steps 1–4 of the module documentation, with the QE's level
/// (`qe_status`, `qe_advisories`) merged in.
pub(crate) fn tdx_status(
    info: &TcbInfo,
    p: &PlatformSvns<'_>,
    tee_tcb_svn: &[u8; 16],
    tee_tcb_svn2: Option<&[u8; 16]>,
    qe_status: TcbStatus,
    qe_advisories: &[String],
) -> Result<Evaluated, Error> {
    let mut launch = evaluate(info, p, tee_tcb_svn)?;
    launch.merge(qe_status, qe_advisories);
    if let Some(svn2) = tee_tcb_svn2 {
        let current = evaluate(info, p, svn2)?;
        let current_status = current.status.converge(qe_status);
        if launch.status != TcbStatus::Revoked && current_status == TcbStatus::Revoked {
            launch.status = TcbStatus::Revoked;
        } else {
            launch.status = launch.status.check_for_relaunch(current_status);
        }
    }
    Ok(launch)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::tdx::collateral::{Component, IsvSvn, Tcb, TdxModuleIdentity, TdxModuleTcbLevel};
    use TcbStatus::*;

    fn level(sgx0: u8, pce: u16, tdx0: u8, status: TcbStatus, adv: &[&str]) -> TcbLevel {
        let comps = |first: u8| {
            let mut v = vec![Component { svn: 0 }; 16];
            v[0].svn = first;
            v
        };
        TcbLevel {
            tcb: Tcb {
                sgxtcbcomponents: comps(sgx0),
                pcesvn: pce,
                tdxtcbcomponents: comps(tdx0),
            },
            tcb_date: "2024-01-01T00:00:00Z".into(),
            tcb_status: status,
            advisory_ids: adv.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn info(levels: Vec<TcbLevel>, modules: Vec<TdxModuleIdentity>) -> TcbInfo {
        TcbInfo {
            id: "TDX".into(),
            version: 3,
            issue_date: String::new(),
            next_update: String::new(),
            fmspc: "00806f050000".into(),
            pce_id: "0000".into(),
            tcb_evaluation_data_number: 17,
            tdx_module: None,
            tdx_module_identities: modules,
            tcb_levels: levels,
        }
    }

    fn module(levels: &[(u16, TcbStatus)]) -> TdxModuleIdentity {
        TdxModuleIdentity {
            id: "TDX_01".into(),
            mrsigner: "00".repeat(48),
            attributes: "00".repeat(8),
            attributes_mask: "FF".repeat(8),
            tcb_levels: levels
                .iter()
                .map(|(svn, st)| TdxModuleTcbLevel {
                    tcb: IsvSvn { isvsvn: *svn },
                    tcb_date: String::new(),
                    tcb_status: *st,
                    advisory_ids: vec![format!("SA-MOD-{svn}")],
                })
                .collect(),
        }
    }

    fn svn(first: u8, major: u8) -> [u8; 16] {
        let mut s = [0u8; 16];
        s[0] = first;
        s[1] = major;
        s
    }

    #[test]
    fn first_matching_level_in_order() {
        let i = info(
            vec![
                level(5, 13, 5, UpToDate, &[]),
                level(3, 11, 3, SWHardeningNeeded, &["SA-1"]),
                level(1, 1, 1, OutOfDate, &["SA-1", "SA-2"]),
            ],
            vec![],
        );
        let sgx = |c| {
            let mut a = [0u8; 16];
            a[0] = c;
            a
        };
        let eval = |c: u8, pce: u16, tdx0: u8| {
            tdx_status(
                &i,
                &PlatformSvns {
                    sgx_components: &sgx(c),
                    pce_svn: pce,
                },
                &svn(tdx0, 0),
                None,
                UpToDate,
                &[],
            )
        };
        assert_eq!(eval(5, 13, 5).unwrap().status, UpToDate);
        // PCESVN below level 1: level 2.
        let e = eval(5, 12, 5).unwrap();
        assert_eq!(
            (e.status, e.advisory_ids),
            (SWHardeningNeeded, vec!["SA-1".into()])
        );
        // TDX component 0 counts when the module major version is 0.
        assert_eq!(eval(9, 13, 2).unwrap().status, OutOfDate);
        let e = eval(0, 13, 9).unwrap_err();
        assert_eq!(e.category(), "tcb-unsupported");
    }

    #[test]
    fn module_identity_judges_components_0_and_1() {
        let i = info(
            vec![level(1, 1, 9, UpToDate, &[])],
            vec![module(&[(5, UpToDate), (3, OutOfDate)])],
        );
        let p = PlatformSvns {
            sgx_components: &[1; 16],
            pce_svn: 1,
        };
        // Major 1: tdx component 0 (9) is skipped, the module level decides.
        let e = tdx_status(&i, &p, &svn(5, 1), None, UpToDate, &[]).unwrap();
        assert_eq!(e.status, UpToDate);
        let e = tdx_status(&i, &p, &svn(4, 1), None, UpToDate, &[]).unwrap();
        assert_eq!(
            (e.status, e.advisory_ids),
            (OutOfDate, vec!["SA-MOD-3".into()])
        );
        assert_eq!(
            tdx_status(&i, &p, &svn(2, 1), None, UpToDate, &[])
                .unwrap_err()
                .category(),
            "tcb-unsupported"
        );
        // Major 2 has no identity.
        assert_eq!(
            tdx_status(&i, &p, &svn(5, 2), None, UpToDate, &[])
                .unwrap_err()
                .category(),
            "tcb-unsupported"
        );
        // QE out of date degrades; a TDX 1.5 current TCB that is up to date advises relaunch.
        let e = tdx_status(&i, &p, &svn(5, 1), None, OutOfDate, &["SA-QE".into()]).unwrap();
        assert_eq!(
            (e.status, e.advisory_ids),
            (OutOfDate, vec!["SA-MOD-5".into(), "SA-QE".into()])
        );
        let e = tdx_status(&i, &p, &svn(4, 1), Some(&svn(5, 1)), UpToDate, &[]).unwrap();
        assert_eq!(e.status, TdRelaunchAdvised);
    }

    #[test]
    fn converge_matches_intel() {
        for (platform, component, want) in [
            (UpToDate, OutOfDate, OutOfDate),
            (ConfigurationNeeded, OutOfDate, OutOfDateConfigurationNeeded),
            (ConfigurationNeeded, Revoked, Revoked),
            (UpToDate, ConfigurationNeeded, UpToDate),
            (SWHardeningNeeded, UpToDate, SWHardeningNeeded),
        ] {
            assert_eq!(platform.converge(component), want);
        }
        let s: TcbStatus = serde_json::from_str("\"TDRelaunchAdvised\"").unwrap();
        assert_eq!(s.to_string(), "TDRelaunchAdvised");
    }
}
