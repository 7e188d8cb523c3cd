//! A UCS simulator: an HTTP server over an embedded database, for the demo, rehearsal and tests.
