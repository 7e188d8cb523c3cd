//! The audit trail: an append-only, hash-chained JSON Lines log with signed checkpoints.
