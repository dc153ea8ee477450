// Tests for this module.
