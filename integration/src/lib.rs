//! Helpers for end-to-end tests that run the real SPIRE server and agent with our plugins.
