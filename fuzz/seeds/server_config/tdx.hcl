tdx {
  allow_debug = false
  allowed_tcb_statuses = ["UpToDate", "SWHardeningNeeded", "ConfigurationNeeded"]
  allowed_advisory_ids = ["INTEL-SA-00837"]
  mrtd = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
  rtmr0 = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
  rtmr1 = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
  rtmr2 = []
  rtmr3 = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
  mrconfigid = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
  mrowner = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
  mrownerconfig = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
  xfam {
    value = "0x602e7"
    mask = 4294967295
  }
  td_attributes {
    value = "0x10000000"
    mask = "0x10000001"
  }
  disable_intel_roots = false
}
attestation_results {
  database = "postgres://twi@localhost/results"
  ear_validity_seconds = 3600
}
