//! What users read: current fleet state (and, as they land, jobs, metrics and the live stream).
//! Everything runs in the org's tenant transaction, so row-level security confines it.

pub mod fleet;
pub mod job_rows;
