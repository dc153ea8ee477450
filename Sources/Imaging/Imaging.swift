// Imaging module; see the module's files.
