import Metrics

/// The Kafka source's own metrics (Prometheus names):
/// - `dreamsr_kafka_consumer_lag{topic,partition}` (gauge): the partition's high watermark minus the offset this
///   consumer would commit next (the oldest unfinished message, or one past the last one finished; before the
///   assignment's first message, the committed offset or where `auto_offset_reset` starts) — the messages not yet
///   done. Refreshed on the poll thread every `KafkaConnectorConfiguration.lagInterval` from the broker
///   (not the fetch cache, which stops moving while a partition is paused); removed when the partition is revoked.
/// - `dreamsr_kafka_messages_total{topic}` (counter): messages consumed (before any parsing).
/// - `dreamsr_kafka_rebalances_total{kind=assign|revoke}` (counter): rebalance callbacks.
/// - `dreamsr_kafka_paused_partitions` (gauge): partitions paused for back-pressure now.
/// Retries and dead letters are `SourceMetrics` (`dreamsr_retries_total`, `dreamsr_dead_letters_total`).
public struct KafkaMetrics: Sendable {
    public static let consumerLag = "dreamsr_kafka_consumer_lag"
    public static let messagesTotal = "dreamsr_kafka_messages_total"
    public static let rebalancesTotal = "dreamsr_kafka_rebalances_total"
    public static let pausedPartitions = "dreamsr_kafka_paused_partitions"

    let factory: any MetricsFactory

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
    }

    func consumed(topic: String) {
        Counter(label: Self.messagesTotal, dimensions: [("topic", topic)], factory: factory).increment()
    }

    func rebalanced(assigned: Bool) {
        Counter(label: Self.rebalancesTotal, dimensions: [("kind", assigned ? "assign" : "revoke")], factory: factory)
            .increment()
    }

    func paused(_ count: Int) {
        Gauge(label: Self.pausedPartitions, dimensions: [], factory: factory).record(count)
    }

    func lag(_ tp: TopicPartition, _ messages: Int64) {
        lagGauge(tp).record(messages)
    }

    /// Drops a revoked partition's lag series (its value would go stale and look like a stuck consumer).
    func removeLag(_ tp: TopicPartition) {
        lagGauge(tp).destroy()
    }

    private func lagGauge(_ tp: TopicPartition) -> Gauge {
        Gauge(label: Self.consumerLag, dimensions: [("topic", tp.topic), ("partition", String(tp.partition))],
              factory: factory)
    }
}
