// Raster module; see the module's files.
