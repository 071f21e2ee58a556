//! Pure protocol core.
