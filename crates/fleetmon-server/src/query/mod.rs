//! What users read: current fleet state and jobs (and, as they land, metrics and the live
//! stream). Everything runs in the org's tenant transaction, so row-level security confines it.

pub mod fleet;
pub mod jobs;
