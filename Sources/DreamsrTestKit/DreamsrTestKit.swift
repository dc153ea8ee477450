// DreamsrTestKit module; see the module's files.
