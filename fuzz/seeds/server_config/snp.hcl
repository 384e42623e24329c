plugin_name = "twi_snp"
can_reattest = false
nonce_len = 64
snp {
  allow_debug = true
  allow_migrate_ma = false
  minimum_tcb {
    bootloader = 3
    tee = 0
    snp = 8
    microcode = 115
    fmc = 1
  }
  allowed_measurements = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
  allowed_host_data = ["0101010101010101010101010101010101010101010101010101010101010101"]
  allowed_id_key_digests = ["abababababababababababababababababababababababababababababababababababababababababababababababab"]
  allowed_vmpls = [0, 1]
  minimum_guest_svn = 2
  kds {
    url = "https://kdsintf.amd.com"
    cache_dir = ""
    timeout_seconds = 10
  }
}
