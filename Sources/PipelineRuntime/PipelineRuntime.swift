// PipelineRuntime module; see the module's files.
