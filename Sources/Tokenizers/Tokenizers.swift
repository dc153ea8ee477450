// Tokenizers module; see the module's files.
