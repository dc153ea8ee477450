// WatchFolderConnector module; see the module's files.
