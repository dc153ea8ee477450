// Upscaling module; see the module's files.
