//! The environments file: named targets (UCS, Context Services, GMS, Info Mart) and policy.
