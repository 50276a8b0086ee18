"""An embedded local Internet Computer for tests and demos."""
