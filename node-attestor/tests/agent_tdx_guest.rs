//! The legacy `/dev/tdx_guest` TDX source through the public API, on a machine without TDX: a regular
//! file stands in for the device node (every tdx_guest ioctl on it is `ENOTTY`), temp directories for
//! configfs-tsm. What this shows: detection order, that a wrong node is a clear error at Configure and
//! never a panic or a hang, and the error texts operators see. The quote path itself (GetQuote buffer,
//! statuses, timeouts) is unit-tested against a simulated kernel in `agent/collect/tdx_guest.rs`; no
//! test here or there ran on TDX hardware.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tonic::Code;
use twi_node_attestor::agent::collect::{
    self, CollectError, Collector, TdxGuest, GET_QUOTE_COMMANDS,
};
use twi_node_attestor::agent::AgentPlugin;
use twi_node_attestor::wire::TeeKind;
use twi_plugin::testing::{self, LoadedPlugin};
use twi_plugin::PluginType;

const TRUST_DOMAIN: &str = "example.org";

fn enotty_text() -> String {
    std::io::Error::from_raw_os_error(libc::ENOTTY).to_string()
}

/// A temp dir with a regular file `tdx_guest` and no configfs-tsm root.
fn fake_node() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("tdx_guest");
    std::fs::write(&dev, b"not a device").unwrap();
    (dir, dev)
}

fn assert_enotty_on_report0(err: &CollectError, dev: &Path) {
    assert!(
        matches!(err, CollectError::TdxIoctl { request: "TDX_CMD_GET_REPORT0", errno, .. }
            if errno.raw_os_error() == Some(libc::ENOTTY)),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&dev.display().to_string()), "{msg}");
    assert!(msg.contains(&enotty_text()), "{msg}");
    assert!(msg.contains("is it the tdx_guest device node?"), "{msg}");
}

#[test]
fn regular_file_as_device_is_enotty_not_a_panic_or_hang() {
    let (_dir, dev) = fake_node();
    let guest = TdxGuest::new(dev.clone());
    assert_eq!(guest.tee(), TeeKind::Tdx);
    assert!(guest.describe().contains(&dev.display().to_string()));
    let start = Instant::now();
    assert_enotty_on_report0(&guest.probe().unwrap_err(), &dev);
    assert_enotty_on_report0(&guest.collect(&[7; 64]).unwrap_err(), &dev);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    // A broken node is a setup fault, not something to retry.
    let status = tonic::Status::from(guest.collect(&[7; 64]).unwrap_err());
    assert_eq!(status.code(), Code::Internal, "{status}");
}

#[test]
fn missing_device_is_an_open_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("absent");
    let err = TdxGuest::new(dev.clone()).probe().unwrap_err();
    assert!(
        matches!(err, CollectError::Io { op: "opening", .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&dev.display().to_string()),
        "{err}"
    );
}

#[test]
fn detection_order_configfs_then_device_then_nothing() {
    let (dir, dev) = fake_node();
    let tsm = dir.path().join("tsm");
    // No configfs root, a device node: the device is used, and its probe's error comes back.
    assert_enotty_on_report0(&collect::detect_tdx(&tsm, &dev).err().unwrap(), &dev);
    // A configfs root that gives no provider (a plain directory: no kernel populates the entry) is
    // passed over for the device, too.
    std::fs::create_dir(&tsm).unwrap();
    assert_enotty_on_report0(&collect::detect_tdx(&tsm, &dev).err().unwrap(), &dev);
    assert_eq!(
        std::fs::read_dir(&tsm).unwrap().count(),
        0,
        "the configfs probe left an entry behind"
    );
    // Neither: the "nothing found" explanation, which mentions the simulated mode.
    std::fs::remove_file(&dev).unwrap();
    let err = collect::detect_tdx(&tsm, &dev).err().unwrap();
    assert!(matches!(err, CollectError::NoTdxDevice { .. }), "{err}");
    assert!(err.to_string().contains("simulated_tdx"), "{err}");
}

#[test]
fn tee_auto_reports_the_broken_tdx_node_rather_than_nothing_found() {
    let (dir, dev) = fake_node();
    let none = dir.path().join("none");
    let err = collect::detect_any(&none, &none, None, &none, &dev)
        .err()
        .unwrap();
    assert_enotty_on_report0(&err, &dev);
}

async fn load(plugin: &AgentPlugin) -> LoadedPlugin {
    let loaded = testing::load(
        PluginType::AgentNodeAttestor,
        plugin.service(),
        plugin.config_handler(),
    )
    .await
    .unwrap();
    loaded.init().await.unwrap();
    loaded
}

#[tokio::test]
async fn configure_tdx_guest_source_probes_the_node() {
    let (dir, dev) = fake_node();
    let plugin = AgentPlugin::new();
    let loaded = load(&plugin).await;

    let hcl = format!(
        "tdx {{\n source = \"tdx-guest\"\n tdx_guest_device = \"{}\"\n}}\n",
        dev.display()
    );
    // Validate only checks values; it touches no device.
    let resp = loaded.validate(TRUST_DOMAIN, &hcl).await.unwrap();
    assert!(resp.valid, "{:?}", resp.notes);
    let err = loaded.configure(TRUST_DOMAIN, &hcl).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let msg = err.message();
    assert!(msg.contains("`tdx.tdx_guest_device`"), "{msg}");
    assert!(
        msg.contains("TDX_CMD_GET_REPORT0") && msg.contains(&enotty_text()),
        "{msg}"
    );

    let absent = dir.path().join("absent");
    let hcl = format!(
        "tdx {{\n source = \"tdx-guest\"\n tdx_guest_device = \"{}\"\n}}\n",
        absent.display()
    );
    let err = loaded.configure(TRUST_DOMAIN, &hcl).await.unwrap_err();
    assert!(err.message().contains("`tdx.tdx_guest_device`"), "{err}");
    assert!(err.message().contains("does not exist"), "{err}");

    // source = "auto": configfs-tsm absent, so the device, probed the same way.
    let hcl = format!(
        "tdx {{\n source = \"auto\"\n configfs_tsm_path = \"{}\"\n tdx_guest_device = \"{}\"\n}}\n",
        dir.path().join("tsm").display(),
        dev.display()
    );
    let err = loaded.configure(TRUST_DOMAIN, &hcl).await.unwrap_err();
    assert!(err.message().contains("`tdx.source`"), "{err}");
    assert!(err.message().contains(&enotty_text()), "{err}");
}

#[test]
fn report_only_error_text_points_to_configfs() {
    let err = CollectError::TdxReportOnly {
        device: PathBuf::from("/dev/tdx_guest"),
        refused: GET_QUOTE_COMMANDS
            .iter()
            .map(|c| format!("{}: {}", c.definition, enotty_text()))
            .collect::<Vec<_>>()
            .join("; "),
    };
    let msg = err.to_string();
    for want in [
        "tdx_guest driver has no GetQuote",
        "/dev/tdx_guest",
        "TDX_CMD_GET_REPORT0",
        "cannot be verified remotely",
        "configfs-tsm",
        "CONFIG_TSM_REPORTS",
        "mount -t configfs",
        "source = \"configfs-tsm\"",
        "_IOWR('T', 2, struct tdx_quote_req)",
    ] {
        assert!(msg.contains(want), "lacks {want:?}: {msg}");
    }
    assert_eq!(tonic::Status::from(err).code(), Code::Internal);
}

#[test]
fn getquote_error_texts_and_retry_classes() {
    let path = PathBuf::from("/dev/tdx_guest");
    let timeout = CollectError::GetQuoteTimeout {
        path: path.clone(),
        waited: collect::GET_QUOTE_TIMEOUT,
    };
    assert!(timeout.to_string().contains("40s"), "{timeout}");
    assert!(timeout.to_string().contains("stays in flight"), "{timeout}");
    assert_eq!(tonic::Status::from(timeout).code(), Code::Unavailable);

    let busy = CollectError::GetQuoteBusy { path: path.clone() };
    assert!(busy.to_string().contains("still in flight"), "{busy}");
    assert_eq!(tonic::Status::from(busy).code(), Code::Unavailable);

    let len = CollectError::GetQuoteLength {
        path: path.clone(),
        got: 0,
        max: 16360,
    };
    assert!(
        len.to_string().contains("0-byte quote, want 1 to 16360"),
        "{len}"
    );
    assert_eq!(tonic::Status::from(len).code(), Code::Internal);

    let interrupted = CollectError::TdxIoctl {
        request: GET_QUOTE_COMMANDS[0].definition,
        path,
        errno: std::io::Error::from_raw_os_error(libc::EINTR),
    };
    assert!(
        interrupted.to_string().contains("try again"),
        "{interrupted}"
    );
    assert_eq!(tonic::Status::from(interrupted).code(), Code::Unavailable);
}
