// Checkpoints module; see the module's files.
