// DreamsrApp module; see the module's files.
