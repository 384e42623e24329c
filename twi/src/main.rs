//! `twi`, the operator CLI of twi-spire.
//!
//! Exit codes are a contract (scripts and reviewers' tools read them): `evidence verify` exits 0 when
//! the evidence is accepted, 1 when it is rejected and 2 for usage or I/O errors (as do `ear verify` and
//! `svid verify`: 0 verified, 1 refused, 2 usage or I/O error); every other command
//! exits 0 on success, 1 on failure and 2 for usage errors.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "twi",
    version,
    about = "twi-spire operator CLI: verify TEE evidence, simulate SEV-SNP, benchmark, demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Verify TEE evidence offline, with the same code the SPIRE server plugin runs.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Simulated AMD SEV-SNP and Intel TDX for machines without the hardware (TEST ROOTS, NOT AMD OR INTEL).
    #[command(subcommand)]
    Sim(SimCommand),
    /// Measure SNP and TDX verification cost against the raw signature floors (and dcap-qvl for TDX).
    Bench(cmd::bench::BenchArgs),
    /// Measure the credential composer: X.509-SVID issuance by SPIRE with and without it, and the
    /// transparency log's durable append rate.
    BenchSvid(cmd::bench_svid::BenchSvidArgs),
    /// Run a real SPIRE server and agent with our plugins on simulated SEV-SNP, end to end.
    Demo(cmd::DemoArgs),
    /// Check signed attestation results (EAR) offline against the verifier's JWKS.
    Ear(cmd::ear::EarArgs),
    /// Serve the credential-provenance transparency log over HTTP, or check that it only grows.
    Log(cmd::log::LogArgs),
    /// What the workload attestor would emit for a PID or a file, and why provenance was used or not.
    Provenance(cmd::provenance::ProvenanceArgs),
    /// Verify X.509-SVIDs carrying TWI extensions (EAR, signed provenance record, log inclusion).
    Svid(cmd::svid::SvidArgs),
}

#[derive(Subcommand)]
enum EvidenceCommand {
    /// Verify and appraise one piece of evidence; exit 0 accepted, 1 rejected, 2 usage or I/O error.
    Verify(cmd::evidence::VerifyArgs),
}

#[derive(Subcommand)]
enum SimCommand {
    /// Create a simulated SEV-SNP root set (ARK, ASK, VCEK and their keys) in a folder.
    Init(cmd::sim::InitArgs),
    /// Write a report signed by a simulated root set.
    Report(cmd::sim::ReportArgs),
    /// Create a simulated Intel TDX root set (root, PCK chain, keys) and its collateral in a folder.
    TdxInit(cmd::sim_tdx::TdxInitArgs),
    /// Write a v4 quote signed by a simulated TDX root set.
    TdxQuote(cmd::sim_tdx::TdxQuoteArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Evidence(EvidenceCommand::Verify(args)) => return cmd::evidence::run(&args),
        Command::Ear(args) => return cmd::ear::run(args),
        Command::Log(args) => return cmd::log::run(args),
        Command::Provenance(args) => return cmd::provenance::run(&args),
        Command::Svid(args) => return cmd::svid::run(&args),
        Command::Sim(SimCommand::Init(args)) => cmd::sim::init(&args),
        Command::Sim(SimCommand::Report(args)) => cmd::sim::report(&args),
        Command::Sim(SimCommand::TdxInit(args)) => cmd::sim_tdx::init(&args),
        Command::Sim(SimCommand::TdxQuote(args)) => cmd::sim_tdx::quote(&args),
        Command::Bench(args) => cmd::bench::run(&args),
        Command::BenchSvid(args) => cmd::bench_svid::run(&args),
        Command::Demo(args) => cmd::demo(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
