//! The UCS connector: one interface for what the engine needs, and the REST client behind it.
