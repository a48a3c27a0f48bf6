//! Agent configuration: JSON file plus `FELHOM_*` environment overrides.
