//! AMD EPYC product lines and their TCB version encodings.

use serde::Serialize;

/// The SEV-SNP product line: it selects the root of trust (ARK) and the TCB byte layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl Product {
    /// The name AMD's KDS uses in URLs (`/vcek/v1/{name}/...`).
    pub fn kds_name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// Product from the CPUID family/model reported in v3+ reports (AMD's family 19h/1Ah model ranges).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Product> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x11) => Some(Product::Turin),
            _ => None,
        }
    }

    /// Product from the certificate's product-name extension (`Milan-B0`, `Genoa`, `Turin`, ...).
    pub fn from_cert_name(name: &str) -> Option<Product> {
        let base = name.split('-').next().unwrap_or(name);
        match base {
            "Milan" => Some(Product::Milan),
            "Genoa" => Some(Product::Genoa),
            "Turin" => Some(Product::Turin),
            _ => None,
        }
    }

    /// How many bytes of CHIP_ID the VCEK's hwID extension carries (Turin: 8, earlier: all 64).
    pub fn hwid_len(self) -> usize {
        match self {
            Product::Turin => 8,
            _ => 64,
        }
    }
}

impl std::fmt::Display for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kds_name())
    }
}

/// The security patch levels packed into a 64-bit TCB_VERSION, decoded for one product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TcbParts {
    /// Turin and later only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl TcbParts {
    /// Decodes a raw TCB_VERSION (Milan/Genoa: bytes 0,1,6,7 = BL,TEE,SNP,uCode;
    /// Turin: bytes 0,1,2,3,7 = FMC,BL,TEE,SNP,uCode).
    pub fn decode(raw: u64, product: Product) -> TcbParts {
        let b = raw.to_le_bytes();
        match product {
            Product::Turin => TcbParts {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
            _ => TcbParts {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
        }
    }

    /// The inverse of [`TcbParts::decode`], used by the simulated device.
    pub fn encode(&self, product: Product) -> u64 {
        let mut b = [0u8; 8];
        match product {
            Product::Turin => {
                b[0] = self.fmc.unwrap_or(0);
                b[1] = self.bootloader;
                b[2] = self.tee;
                b[3] = self.snp;
                b[7] = self.microcode;
            }
            _ => {
                b[0] = self.bootloader;
                b[1] = self.tee;
                b[6] = self.snp;
                b[7] = self.microcode;
            }
        }
        u64::from_le_bytes(b)
    }

    /// `fmc=0 bl=1 tee=0 snp=2 ucode=71`: the form used in error messages and policy violations.
    fn fmt_parts(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bl={} tee={} snp={} ucode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }

    /// True when every component is at least the corresponding one of `min` (a component-wise order:
    /// AMD's TCB is not a single number).
    pub fn meets(&self, min: &TcbParts) -> bool {
        self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
            && self.fmc.unwrap_or(0) >= min.fmc.unwrap_or(0)
    }
}

impl std::fmt::Display for TcbParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.fmt_parts(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_matches_real_reports() {
        // oak-milan-v3 reported TCB bytes 04 00 00 00 00 00 18 db
        let milan = u64::from_le_bytes([0x04, 0, 0, 0, 0, 0, 0x18, 0xdb]);
        let p = TcbParts::decode(milan, Product::Milan);
        assert_eq!(
            (p.bootloader, p.tee, p.snp, p.microcode, p.fmc),
            (4, 0, 24, 219, None)
        );
        assert_eq!(p.encode(Product::Milan), milan);
        // oak-turin-v5 reported TCB bytes 00 01 00 02 00 00 00 47
        let turin = u64::from_le_bytes([0, 1, 0, 2, 0, 0, 0, 0x47]);
        let t = TcbParts::decode(turin, Product::Turin);
        assert_eq!(
            (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
            (Some(0), 1, 0, 2, 0x47)
        );
        assert_eq!(t.encode(Product::Turin), turin);
    }

    #[test]
    fn meets_is_componentwise() {
        let a = TcbParts {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        };
        let higher_ucode_lower_snp = TcbParts {
            snp: 7,
            microcode: 200,
            ..a
        };
        assert!(a.meets(&a));
        assert!(!higher_ucode_lower_snp.meets(&a));
    }
}
