// Checkpoints tests
