plugin_name = "twi"
policy {
  # appraisal policy
  id      = "prod-fleet"
  version = "2026-03-01.1"
  snp {
    allow_debug      = false
    allow_migrate_ma = false
    minimum_tcb {
      bootloader = 3
      tee        = 0
      snp        = 8
      microcode  = 115
      fmc        = 1
    }
    allowed_measurements = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
    allowed_host_data = ["0101010101010101010101010101010101010101010101010101010101010101"]
    allowed_vmpls     = [0]
    minimum_guest_svn = 1
  }
  tdx {
    allow_debug          = false
    allowed_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
    allowed_advisory_ids = ["INTEL-SA-00837", "INTEL-SA-00960"]
    mrtd  = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
    rtmr1 = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
    xfam {
      value = "0x602e7"
      mask  = 0
    }
    td_attributes {
      value = "0x10000000"
      mask  = "0x10000000"
    }
  }
  selectors {
    match "web-v3" {
      snp {
        measurement = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
      }
      tdx {
        mrtd  = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
        rtmr1 = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
      }
    }
  }
}
tdx {
  pcs_url = "https://api.trustedservices.intel.com"
  fetch_timeout_seconds = 30
  collateral_grace_seconds = 0
}
