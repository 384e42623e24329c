"plugin_name" = "twi"
"snp" = {
  "allow_debug" = false
  "allowed_vmpls" = [0]
}
