//! SPIRE WorkloadAttestor plugin `twi-agent-workloadattestor`: PID to selectors, including the workload's
//! verified provenance. Planned in issue #6; this crate holds its place in the workspace layout and
//! contains no code yet.
