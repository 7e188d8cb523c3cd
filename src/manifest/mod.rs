//! Manifests: YAML loading with positions, JSON Schema and semantic validation, typed models.

pub mod yaml;
