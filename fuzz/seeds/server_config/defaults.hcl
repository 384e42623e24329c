plugin_name = "twi"
can_reattest = true
nonce_len = 32
