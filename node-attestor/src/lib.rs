//! SPIRE NodeAttestor plugins for confidential VMs (work in progress).
