//! SPIRE plugin runtime (work in progress).
