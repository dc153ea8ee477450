// dreamsr-mock-kafka: a Kafka-protocol broker on localhost for tests and local runs (librdkafka's mock cluster).
//
//   dreamsr-mock-kafka [--brokers N] [--topic NAME[:PARTITIONS]]... [--partitions DEFAULT]
//
// Prints the bootstrap address (host:port,...) as the first line of stdout, then lives until SIGTERM/SIGINT.
// Topics not created up front are auto-created by the mock broker when first used.
import CRdKafka
import Foundation

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("dreamsr-mock-kafka: \(message)\n".utf8))
    exit(2)
}

var brokers: Int32 = 1
var defaultPartitions: Int32 = 1
var topics: [(String, Int32?)] = []
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--brokers":
        guard let value = arguments.next(), let n = Int32(value), n >= 1 else { fail("--brokers needs a count >= 1") }
        brokers = n
    case "--partitions":
        guard let value = arguments.next(), let n = Int32(value), n >= 1 else { fail("--partitions needs a count >= 1") }
        defaultPartitions = n
    case "--topic":
        guard let value = arguments.next(), !value.isEmpty else { fail("--topic needs NAME[:PARTITIONS]") }
        let parts = value.split(separator: ":", maxSplits: 1)
        if parts.count == 2 {
            guard let n = Int32(parts[1]), n >= 1 else { fail("bad partition count in '\(value)'") }
            topics.append((String(parts[0]), n))
        } else {
            topics.append((value, nil))
        }
    case "-h", "--help":
        print("usage: dreamsr-mock-kafka [--brokers N] [--topic NAME[:PARTITIONS]]... [--partitions DEFAULT]")
        exit(0)
    default:
        fail("unknown argument '\(argument)'")
    }
}

// Block the termination signals before librdkafka starts its threads, then wait for them with sigwait.
var signals = sigset_t()
sigemptyset(&signals)
sigaddset(&signals, SIGTERM)
sigaddset(&signals, SIGINT)
pthread_sigmask(SIG_BLOCK, &signals, nil)

guard let conf = rd_kafka_conf_new() else { fail("rd_kafka_conf_new failed") }
var errstr = [CChar](repeating: 0, count: 512)
_ = rd_kafka_conf_set(conf, "log_level", "3", &errstr, errstr.count)
guard let client = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errstr, errstr.count) else {
    fail("rd_kafka_new failed: \(String(cString: errstr))")
}
guard let cluster = rd_kafka_mock_cluster_new(client, brokers) else { fail("rd_kafka_mock_cluster_new failed") }
for (name, partitions) in topics {
    let err = rd_kafka_mock_topic_create(cluster, name, partitions ?? defaultPartitions, min(brokers, 3))
    // librdkafka 2.0.2's mock thread can miss the wake-up of a command issued right after the previous one and sit
    // out its 1 s poll timeout (see MockKafkaCluster.createTopic): let it finish its loop between commands.
    usleep(10_000)
    if err != RD_KAFKA_RESP_ERR_NO_ERROR {
        fail("cannot create topic '\(name)': \(String(cString: rd_kafka_err2str(err)))")
    }
}
FileHandle.standardOutput.write(Data((String(cString: rd_kafka_mock_cluster_bootstraps(cluster)) + "\n").utf8))
FileHandle.standardError.write(Data("dreamsr-mock-kafka: \(brokers) broker(s), topics: \(topics.map { "\($0.0):\($0.1 ?? defaultPartitions)" }.joined(separator: " ")); SIGTERM to stop\n".utf8))

var received: Int32 = 0
sigwait(&signals, &received)
rd_kafka_mock_cluster_destroy(cluster)
rd_kafka_destroy(client)
