// Models module; see the module's files.
