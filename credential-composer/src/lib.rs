//! SPIRE CredentialComposer plugin `twi-server-credentialcomposer`: attestation-result and provenance
//! extensions in SVIDs and one credential-provenance record per credential. Planned in issue #5; this
//! crate holds its place in the workspace layout and contains no code yet.
