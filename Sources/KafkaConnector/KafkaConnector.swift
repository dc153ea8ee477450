// KafkaConnector module; see the module's files.
