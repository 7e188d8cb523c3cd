//! The connector against the simulator, and `ucs-gdpr sim`.
