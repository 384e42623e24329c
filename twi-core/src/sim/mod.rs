//! Simulated SEV-SNP device and roots (work in progress).
