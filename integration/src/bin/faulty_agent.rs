//! `twi-test-faulty-agent`: TEST ONLY. The real agent NodeAttestor with its evidence corrupted on
//! purpose, so the end-to-end tests can show a real SPIRE server refusing it. The mode is the first
//! `plugin_args` entry:
//! * `tamper`: a genuine report for the server's nonce with one measurement byte changed after signing;
//! * `replay`: a genuine report produced earlier, for another nonce, sent again.
//!
//! Everything else (configuration, instance key, wire messages, key proof) is the real agent's code.

use std::process::ExitCode;
use std::sync::Arc;

use twi_core::snp::layout;
use twi_node_attestor::agent::collect::{CollectError, Collector};
use twi_node_attestor::agent::AgentPlugin;
use twi_node_attestor::wire::{Evidence, TeeKind};

#[derive(Clone, Copy, Debug)]
enum Fault {
    Tamper,
    Replay,
}

struct Faulty {
    inner: Arc<dyn Collector>,
    fault: Fault,
}

impl Collector for Faulty {
    fn tee(&self) -> TeeKind {
        self.inner.tee()
    }

    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, CollectError> {
        match self.fault {
            Fault::Tamper => {
                let mut evidence = self.inner.collect(report_data)?;
                let Evidence::Snp(snp) = &mut evidence else {
                    return Ok(evidence);
                };
                if let Some(b) = snp.report.get_mut(layout::MEASUREMENT) {
                    *b ^= 0x01;
                }
                Ok(evidence)
            }
            // A report made for a nonce of an earlier attestation, as an attacker who recorded it would
            // replay it: its signature and chain are genuine, only the binding is stale.
            Fault::Replay => self.inner.collect(&[0x5a; 64]),
        }
    }

    fn describe(&self) -> String {
        format!("FAULTY ({:?}) {}", self.fault, self.inner.describe())
    }
}

fn main() -> ExitCode {
    let fault = match std::env::args().nth(1).as_deref() {
        Some("tamper") => Fault::Tamper,
        Some("replay") => Fault::Replay,
        other => {
            eprintln!("twi-test-faulty-agent: first plugin_args entry must be `tamper` or `replay`, got {other:?}");
            return ExitCode::from(2);
        }
    };
    AgentPlugin::with_collector_wrapper(move |inner| {
        Arc::new(Faulty { inner, fault }) as Arc<dyn Collector>
    })
    .run()
}
