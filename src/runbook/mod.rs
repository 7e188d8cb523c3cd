//! Runbooks: named DAGs of steps from a fixed catalogue.
