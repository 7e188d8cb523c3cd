//! The REST client against the simulator: every connector operation, paging, faults.
