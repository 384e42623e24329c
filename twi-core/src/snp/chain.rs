//! The certificates that come with a report: from the extended-report / configfs-tsm certificate
//! table (GHCB specification 56421, "Certificate table" of `SNP_GUEST_REQUEST` extended requests), or
//! from files named on the command line. Everything here is untrusted input: the verifier decides what
//! to believe.

use super::cert::{ParsedCert, Role, MAX_CERT_LEN};
use crate::Error;

/// Bytes of one table entry: GUID (16), offset (u32 LE), length (u32 LE).
pub const CERT_TABLE_ENTRY_LEN: usize = 24;
/// Tables larger than this are refused before parsing.
pub const MAX_CERT_TABLE_LEN: usize = 64 * 1024;
/// At most this many entries (not counting the all-zero terminator).
pub const MAX_CERT_TABLE_ENTRIES: usize = 16;
/// Inputs to [`CertChain::add_pem_or_der`] larger than this are refused (a PEM bundle of a few certs).
pub const MAX_CERT_FILE_LEN: usize = 64 * 1024;
/// At most this many certificates in one PEM bundle.
const MAX_PEM_CERTS: usize = 8;

/// GHCB GUIDs, in the byte order they have on the wire: the order the text is written, as the
/// kernel's `uuid_parse` and go-sev-guest's `uuid.Parse` produce.
pub mod guid {
    /// VCEK `63da758d-e664-4564-adc5-f4b93be8accd`.
    pub const VCEK: [u8; 16] = [
        0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac,
        0xcd,
    ];
    /// VLEK `a8074bc2-a25a-483e-aae6-39c045a0b8a1`.
    pub const VLEK: [u8; 16] = [
        0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8,
        0xa1,
    ];
    /// ASK `4ab7b379-bbac-4fe4-a02f-05aef327c782`. It also carries the ASVK: go-sev-guest's `AskGUID`
    /// is "used for the ASVK as well" and its `AsvkGUID` is all zero, i.e. not defined.
    pub const ASK: [u8; 16] = [
        0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7,
        0x82,
    ];
    /// ARK `c0b406a4-a803-4952-9743-3fb6014cd0ae`.
    pub const ARK: [u8; 16] = [
        0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0,
        0xae,
    ];
    /// CRL `92f81bc3-5811-4d3d-97ff-d19f88dc67ea` (skipped when reading a table).
    pub const CRL: [u8; 16] = [
        0x92, 0xf8, 0x1b, 0xc3, 0x58, 0x11, 0x4d, 0x3d, 0x97, 0xff, 0xd1, 0x9f, 0x88, 0xdc, 0x67,
        0xea,
    ];
}

/// The certificates sent with a report, as DER. Untrusted until [`super::Verifier::verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertChain {
    /// The VCEK or the VLEK (whichever signed the report).
    pub vek: Option<Vec<u8>>,
    /// The ASK (for a VCEK) or the ASVK (for a VLEK).
    pub ask: Option<Vec<u8>>,
    /// The ARK: accepted only when its SHA-256 is a trust anchor.
    pub ark: Option<Vec<u8>>,
}

fn table_err(detail: impl std::fmt::Display) -> Error {
    Error::malformed("certificate table", detail)
}

fn le_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

impl CertChain {
    /// Reads the GUID table of an extended report (or a configfs-tsm `auxblob`).
    ///
    /// Entries are `{guid[16], offset u32, length u32}` up to an all-zero entry; offsets are from the
    /// start of the table and must point past the entries. Unknown GUIDs (CRL, vendor extras) are
    /// skipped. An empty or all-zero table gives an empty chain.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a table over [`MAX_CERT_TABLE_LEN`], more than
    /// [`MAX_CERT_TABLE_ENTRIES`] entries, no terminator, an entry out of bounds, overlapping the
    /// entries, empty or over the certificate cap, a GUID given twice, or both a VCEK and a VLEK.
    pub fn from_cert_table(table: &[u8]) -> Result<Self, Error> {
        if table.len() > MAX_CERT_TABLE_LEN {
            return Err(table_err(format!(
                "{} bytes, cap {MAX_CERT_TABLE_LEN}",
                table.len()
            )));
        }
        let mut chain = CertChain::default();
        if table.iter().all(|b| *b == 0) {
            return Ok(chain);
        }
        let mut entries = Vec::new();
        let mut terminated = false;
        for (i, entry) in table.chunks(CERT_TABLE_ENTRY_LEN).enumerate() {
            if entry.len() != CERT_TABLE_ENTRY_LEN {
                break;
            }
            if entry.iter().all(|b| *b == 0) {
                terminated = true;
                break;
            }
            if i >= MAX_CERT_TABLE_ENTRIES {
                return Err(table_err(format!(
                    "more than {MAX_CERT_TABLE_ENTRIES} entries"
                )));
            }
            let (guid, rest) = entry.split_at(16);
            let (off, len) = rest.split_at(4);
            let (off, len) = (le_u32(off), le_u32(len));
            let (Some(off), Some(len)) = (off, len) else {
                return Err(table_err("entry cannot be read"));
            };
            entries.push((guid.to_vec(), off, len));
        }
        if !terminated {
            return Err(table_err("no all-zero terminating entry"));
        }
        let header_end = (entries.len() + 1) * CERT_TABLE_ENTRY_LEN;
        let (mut vcek, mut vlek) = (None, None);
        for (guid, off, len) in entries {
            let (off, len) = (off as usize, len as usize);
            let end = off
                .checked_add(len)
                .ok_or_else(|| table_err("offset + length overflows"))?;
            let data = table.get(off..end).ok_or_else(|| {
                table_err(format!(
                    "entry {off}+{len} is past the table end {}",
                    table.len()
                ))
            })?;
            if off < header_end {
                return Err(table_err(format!(
                    "entry at offset {off} overlaps the entries (end {header_end})"
                )));
            }
            if len == 0 || len > MAX_CERT_LEN {
                return Err(table_err(format!(
                    "entry length {len}, want 1..={MAX_CERT_LEN}"
                )));
            }
            let slot = match <[u8; 16]>::try_from(guid.as_slice()) {
                Ok(guid::VCEK) => &mut vcek,
                Ok(guid::VLEK) => &mut vlek,
                Ok(guid::ASK) => &mut chain.ask,
                Ok(guid::ARK) => &mut chain.ark,
                _ => continue,
            };
            if slot.replace(data.to_vec()).is_some() {
                return Err(table_err(format!(
                    "GUID {} appears twice",
                    hex::encode(&guid)
                )));
            }
        }
        chain.vek = match (vcek, vlek) {
            (Some(_), Some(_)) => return Err(table_err("both a VCEK and a VLEK entry")),
            (v, None) | (None, v) => v,
        };
        Ok(chain)
    }

    /// The inverse of [`CertChain::from_cert_table`]: entries VEK, ASK, ARK (those present), the
    /// terminator, then the certificates. The VEK's GUID is VLEK when its subject CN is `SEV-VLEK`.
    pub fn to_cert_table(&self) -> Vec<u8> {
        let vek_guid = match self.vek.as_deref().map(ParsedCert::from_der) {
            Some(Ok(c)) if c.role() == Some(Role::Vlek) => guid::VLEK,
            _ => guid::VCEK,
        };
        let parts: Vec<([u8; 16], &[u8])> = [
            (vek_guid, &self.vek),
            (guid::ASK, &self.ask),
            (guid::ARK, &self.ark),
        ]
        .into_iter()
        .filter_map(|(g, c)| c.as_deref().map(|c| (g, c)))
        .collect();
        let mut header = Vec::new();
        let mut body = Vec::new();
        let mut offset = (parts.len() + 1) * CERT_TABLE_ENTRY_LEN;
        for (g, der) in &parts {
            header.extend_from_slice(g);
            header.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_le_bytes());
            header.extend_from_slice(&u32::try_from(der.len()).unwrap_or(u32::MAX).to_le_bytes());
            body.extend_from_slice(der);
            offset = offset.saturating_add(der.len());
        }
        header.extend_from_slice(&[0u8; CERT_TABLE_ENTRY_LEN]);
        header.extend_from_slice(&body);
        header
    }

    /// Adds a certificate file (DER, or PEM with one or more certificates) to the slot its subject CN
    /// names: `SEV-VCEK`/`SEV-VLEK` → `vek`, `SEV-<product>`/`SEV-VLEK-<product>` → `ask`,
    /// `ARK-<product>` → `ark`. Serves the CLI's repeated `--cert` and KDS `cert_chain` bundles.
    ///
    /// # Errors
    /// [`Error::Malformed`] for input over [`MAX_CERT_FILE_LEN`], something that is not a certificate,
    /// an unknown CN, or a slot already holding a different certificate.
    pub fn add_pem_or_der(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if bytes.len() > MAX_CERT_FILE_LEN {
            return Err(Error::malformed(
                "certificate file",
                format!("{} bytes, cap {MAX_CERT_FILE_LEN}", bytes.len()),
            ));
        }
        let ders = if bytes.first() == Some(&0x30) {
            vec![bytes.to_vec()]
        } else {
            pem_certificates(bytes)?
        };
        // Classify everything first so that a bad bundle leaves the chain unchanged.
        let mut classified = Vec::with_capacity(ders.len());
        for der in ders {
            let cert = ParsedCert::from_der(&der)?;
            let role = cert.role().ok_or_else(|| {
                Error::malformed(
                    "certificate file",
                    format!(
                        "subject CN {:?} is not an AMD ARK, ASK, ASVK, VCEK or VLEK",
                        cert.common_name()
                    ),
                )
            })?;
            classified.push((role, der));
        }
        let mut next = self.clone();
        for (role, der) in classified {
            let (slot, name) = match role {
                Role::Vcek | Role::Vlek => (&mut next.vek, "VCEK/VLEK"),
                Role::Ask(_) | Role::Asvk(_) => (&mut next.ask, "ASK/ASVK"),
                Role::Ark(_) => (&mut next.ark, "ARK"),
            };
            match slot {
                Some(existing) if *existing != der => {
                    return Err(Error::malformed(
                        "certificate file",
                        format!("a different {name} was already given"),
                    ));
                }
                _ => *slot = Some(der),
            }
        }
        *self = next;
        Ok(())
    }
}

/// The DER of every `CERTIFICATE` block of a PEM text, as encoded (no re-encoding).
fn pem_certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let bad = |d: &dyn std::fmt::Display| Error::malformed("certificate file", d.to_string());
    let text = std::str::from_utf8(bytes).map_err(|_| bad(&"neither DER nor PEM text"))?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = rest.get(start..).unwrap_or_default();
        let end_marker = after
            .find("-----END ")
            .ok_or_else(|| bad(&"PEM block without END line"))?;
        let tail = after
            .get(end_marker + "-----END ".len()..)
            .unwrap_or_default();
        let close = tail
            .find("-----")
            .ok_or_else(|| bad(&"PEM END line not closed"))?;
        let block_len = end_marker + "-----END ".len() + close + "-----".len();
        let block = after.get(..block_len).unwrap_or_default();
        let (label, der) = der::pem::decode_vec(block.as_bytes()).map_err(|e| bad(&e))?;
        if label != "CERTIFICATE" {
            return Err(bad(&format!("PEM label {label}, want CERTIFICATE")));
        }
        out.push(der);
        if out.len() > MAX_PEM_CERTS {
            return Err(bad(&format!("more than {MAX_PEM_CERTS} certificates")));
        }
        rest = after.get(block_len..).unwrap_or_default();
    }
    if out.is_empty() {
        return Err(bad(&"no DER certificate and no PEM CERTIFICATE block"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    fn read(rel: &str) -> Vec<u8> {
        std::fs::read(format!("{TESTDATA}/{rel}")).unwrap()
    }

    fn entry(guid: [u8; 16], off: u32, len: u32) -> Vec<u8> {
        let mut e = guid.to_vec();
        e.extend_from_slice(&off.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e
    }

    #[test]
    fn guids_are_the_ghcb_text_in_written_order() {
        for (g, text) in [
            (guid::VCEK, "63da758d-e664-4564-adc5-f4b93be8accd"),
            (guid::VLEK, "a8074bc2-a25a-483e-aae6-39c045a0b8a1"),
            (guid::ASK, "4ab7b379-bbac-4fe4-a02f-05aef327c782"),
            (guid::ARK, "c0b406a4-a803-4952-9743-3fb6014cd0ae"),
            (guid::CRL, "92f81bc3-5811-4d3d-97ff-d19f88dc67ea"),
        ] {
            assert_eq!(hex::encode(g), text.replace('-', ""));
        }
    }

    fn milan_chain() -> CertChain {
        let mut c = CertChain::default();
        c.add_pem_or_der(&read("snp/virtee-milan-v2/vcek.der"))
            .unwrap();
        c.add_pem_or_der(&read("vendor-roots/amd/milan/ask.pem"))
            .unwrap();
        c.add_pem_or_der(&read("vendor-roots/amd/milan/ark.pem"))
            .unwrap();
        c
    }

    #[test]
    fn add_classifies_by_subject() {
        let c = milan_chain();
        assert_eq!(
            c.vek.as_deref(),
            Some(read("snp/virtee-milan-v2/vcek.der").as_slice())
        );
        assert!(c.ask.is_some() && c.ark.is_some());
        // A bundle (KDS cert_chain: ASK then ARK) fills both slots; same certs again are fine.
        let mut bundle = read("vendor-roots/amd/milan/ask.pem");
        bundle.extend_from_slice(&read("vendor-roots/amd/milan/ark.pem"));
        let mut d = CertChain::default();
        d.add_pem_or_der(&bundle).unwrap();
        assert_eq!(
            (d.ask.clone(), d.ark.clone()),
            (c.ask.clone(), c.ark.clone())
        );
        d.add_pem_or_der(&bundle).unwrap();
        // A different ARK for a filled slot is refused and leaves the chain unchanged.
        let before = d.clone();
        let e = d
            .add_pem_or_der(&read("vendor-roots/amd/genoa/ark.pem"))
            .unwrap_err();
        assert!(e.to_string().contains("ARK"), "{e}");
        assert_eq!(d, before);
        // The ASVK goes to the ask slot.
        let mut v = CertChain::default();
        v.add_pem_or_der(&read("vendor-roots/amd/milan/asvk.pem"))
            .unwrap();
        v.add_pem_or_der(&read("snp/aws-milan-v3-vlek/vlek.der"))
            .unwrap();
        assert!(v.ask.is_some() && v.vek.is_some());
        assert_eq!(
            CertChain::default()
                .add_pem_or_der(b"hello")
                .unwrap_err()
                .category(),
            "malformed"
        );
    }

    #[test]
    fn cert_table_round_trip() {
        let c = milan_chain();
        let t = c.to_cert_table();
        assert_eq!(&t[..16], &guid::VCEK);
        assert_eq!(CertChain::from_cert_table(&t).unwrap(), c);
        // A VLEK is written under the VLEK GUID and read back into `vek`.
        let mut v = CertChain::default();
        v.add_pem_or_der(&read("snp/aws-milan-v3-vlek/vlek.der"))
            .unwrap();
        let t = v.to_cert_table();
        assert_eq!(&t[..16], &guid::VLEK);
        assert_eq!(CertChain::from_cert_table(&t).unwrap(), v);
        // Empty tables.
        assert_eq!(
            CertChain::from_cert_table(&[]).unwrap(),
            CertChain::default()
        );
        assert_eq!(
            CertChain::from_cert_table(&[0; 4096]).unwrap(),
            CertChain::default()
        );
        assert_eq!(
            CertChain::from_cert_table(&CertChain::default().to_cert_table()).unwrap(),
            CertChain::default()
        );
    }

    #[test]
    fn cert_table_bounds_are_checked() {
        let cert = vec![0x30u8; 100];
        let header = 2 * CERT_TABLE_ENTRY_LEN as u32;
        let build = |e: Vec<u8>| {
            let mut t = e;
            t.extend_from_slice(&[0; CERT_TABLE_ENTRY_LEN]);
            t.extend_from_slice(&cert);
            t
        };
        let ok = build(entry(guid::ARK, header, 100));
        assert_eq!(CertChain::from_cert_table(&ok).unwrap().ark.unwrap(), cert);
        for (name, table) in [
            ("past end", build(entry(guid::ARK, header, 101))),
            ("overflow", build(entry(guid::ARK, u32::MAX, 2))),
            ("into header", build(entry(guid::ARK, 0, 10))),
            ("empty", build(entry(guid::ARK, header, 0))),
            ("no terminator", entry(guid::ARK, 24, 0)),
            (
                "truncated entry",
                entry(guid::ARK, header, 100)[..20].to_vec(),
            ),
            ("oversized", vec![1u8; MAX_CERT_TABLE_LEN + 1]),
        ] {
            let e = CertChain::from_cert_table(&table).unwrap_err();
            assert_eq!(e.category(), "malformed", "{name}: {e}");
        }
        // Duplicates and VCEK + VLEK together.
        let mut dup = entry(guid::ARK, 3 * 24, 100);
        dup.extend(entry(guid::ARK, 3 * 24, 100));
        dup.extend_from_slice(&[0; 24]);
        dup.extend_from_slice(&cert);
        assert!(CertChain::from_cert_table(&dup)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let mut both = entry(guid::VCEK, 3 * 24, 100);
        both.extend(entry(guid::VLEK, 3 * 24, 100));
        both.extend_from_slice(&[0; 24]);
        both.extend_from_slice(&cert);
        assert!(CertChain::from_cert_table(&both)
            .unwrap_err()
            .to_string()
            .contains("both"));
        // Too many entries (unknown GUIDs would otherwise be skipped).
        let mut many = Vec::new();
        for _ in 0..=MAX_CERT_TABLE_ENTRIES {
            many.extend(entry([7; 16], 0, 0));
        }
        many.extend_from_slice(&[0; 24]);
        assert!(CertChain::from_cert_table(&many)
            .unwrap_err()
            .to_string()
            .contains("entries"));
        // Unknown GUIDs (e.g. the CRL) are skipped.
        let skipped = build(entry(guid::CRL, header, 100));
        assert_eq!(
            CertChain::from_cert_table(&skipped).unwrap(),
            CertChain::default()
        );
    }
}
