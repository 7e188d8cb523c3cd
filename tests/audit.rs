//! `ucs-gdpr audit`: verify, show, keygen.
