"""Panel components (Viewers) shared by `apps/` and notebooks. Imports panel; the library does not."""
