//! Bad plugin configuration stops SPIRE at start-up with an error that names the offending key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use twi::spire::SpireServer;
use twi_integration::*;

#[test]
fn server_refuses_to_start_with_bad_hcl_and_names_the_key() -> anyhow::Result<()> {
    let bins = spire_bins()?;
    let sim = shared_sim_dir()?;
    let run = spire::short_tempdir("twi-e2e3-")?;
    let settings = server_settings(&[sim], "  allow_debugg = true")?;
    let err = SpireServer::start(&bins, run.path(), &settings).expect_err("server must not start");
    let text = format!("{err:#}");
    assert!(
        text.contains("allow_debugg"),
        "error does not name the key: {text}"
    );
    assert!(
        text.contains("failed to configure plugin"),
        "not a Configure failure: {text}"
    );

    let run = spire::short_tempdir("twi-e2e3-")?;
    let mut settings = server_settings(&[sim], "")?;
    settings.plugins[0].data = "snp {\n  simulated_roots = [\"/nonexistent/ark.pem\"]\n}".into();
    let err = SpireServer::start(&bins, run.path(), &settings).expect_err("server must not start");
    let text = format!("{err:#}");
    assert!(
        text.contains("simulated_roots") && text.contains("/nonexistent/ark.pem"),
        "{text}"
    );
    Ok(())
}
