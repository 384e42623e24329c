//! The certificate table of an SNP extended guest request (GHCB specification, publication 56421,
//! §4.1.8.1): entries of { GUID (16 bytes), offset (u32 LE), length (u32 LE) }, an all-zero entry at the
//! end, then the certificates; offsets count from the start of the table.
//!
//! GUIDs are stored in RFC 4122 byte order (the order of the printed string), which is what the Linux
//! `sev-guest` host tooling writes and what go-sev-guest compares against (`uuid.Parse(...)` bytes).

use super::SimError;

/// `63da758d-e664-4564-adc5-f4b93be8accd`: the VCEK.
pub const VCEK_GUID: [u8; 16] = [
    0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd,
];
/// `4ab7b379-bbac-4fe4-a02f-05aef327c782`: the ASK.
pub const ASK_GUID: [u8; 16] = [
    0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82,
];
/// `c0b406a4-a803-4952-9743-3fb6014cd0ae`: the ARK.
pub const ARK_GUID: [u8; 16] = [
    0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae,
];

const ENTRY_LEN: usize = 24;

/// Encodes `(guid, der)` pairs as a certificate table, in the given order.
pub fn encode_cert_table(entries: &[([u8; 16], &[u8])]) -> Result<Vec<u8>, SimError> {
    let too_big = |detail: String| SimError::Encode {
        what: "certificate table",
        detail,
    };
    let header_len = entries
        .len()
        .checked_add(1)
        .and_then(|n| n.checked_mul(ENTRY_LEN))
        .ok_or_else(|| too_big("too many entries".into()))?;
    let mut header = Vec::with_capacity(header_len);
    let mut body = Vec::new();
    for (guid, der) in entries {
        let offset = header_len
            .checked_add(body.len())
            .and_then(|o| u32::try_from(o).ok())
            .ok_or_else(|| too_big(format!("offset beyond 4 GiB ({} bytes before)", body.len())))?;
        let length = u32::try_from(der.len())
            .map_err(|_| too_big(format!("certificate of {} bytes", der.len())))?;
        header.extend_from_slice(guid);
        header.extend_from_slice(&offset.to_le_bytes());
        header.extend_from_slice(&length.to_le_bytes());
        body.extend_from_slice(der);
    }
    header.resize(header_len, 0);
    header.extend_from_slice(&body);
    Ok(header)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn guid_from_str(s: &str) -> [u8; 16] {
        let v = hex::decode(s.replace('-', "")).unwrap();
        v.try_into().unwrap()
    }

    #[test]
    fn guids_are_in_string_order() {
        assert_eq!(
            VCEK_GUID,
            guid_from_str("63da758d-e664-4564-adc5-f4b93be8accd")
        );
        assert_eq!(
            ASK_GUID,
            guid_from_str("4ab7b379-bbac-4fe4-a02f-05aef327c782")
        );
        assert_eq!(
            ARK_GUID,
            guid_from_str("c0b406a4-a803-4952-9743-3fb6014cd0ae")
        );
    }

    #[test]
    fn table_layout() {
        let a = [1u8, 2, 3];
        let b = [9u8; 5];
        let t = encode_cert_table(&[(VCEK_GUID, &a), (ASK_GUID, &b)]).unwrap();
        assert_eq!(t.len(), 3 * 24 + 3 + 5);
        assert_eq!(&t[..16], &VCEK_GUID);
        assert_eq!(u32::from_le_bytes(t[16..20].try_into().unwrap()), 72);
        assert_eq!(u32::from_le_bytes(t[20..24].try_into().unwrap()), 3);
        assert_eq!(&t[24..40], &ASK_GUID);
        assert_eq!(u32::from_le_bytes(t[40..44].try_into().unwrap()), 75);
        assert_eq!(u32::from_le_bytes(t[44..48].try_into().unwrap()), 5);
        assert!(
            t[48..72].iter().all(|&x| x == 0),
            "terminator entry is all zero"
        );
        assert_eq!(&t[72..75], &a);
        assert_eq!(&t[75..], &b);
    }
}
