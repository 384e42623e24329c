//! The `twi` operator CLI as a library: the SPIRE orchestration behind `twi demo` is shared with the
//! end-to-end tests in `integration/`, so the demo and the tests drive SPIRE the same way.

pub mod demo;
pub mod spire;
pub mod svid;
