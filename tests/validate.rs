//! `ucs-gdpr validate` and `ucs-gdpr schema`.
