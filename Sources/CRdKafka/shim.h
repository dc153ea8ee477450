#ifndef DREAMSR_CRDKAFKA_SHIM_H
#define DREAMSR_CRDKAFKA_SHIM_H
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/*
 * Swift cannot call variadic C functions (rd_kafka_producev), and rd_kafka_produce() cannot carry headers.
 * This non-variadic inline wrapper calls rd_kafka_producev from C. The payload and key are copied
 * (RD_KAFKA_MSG_F_COPY). On success librdkafka owns `headers`; on failure the caller still owns them and
 * must call rd_kafka_headers_destroy().
 */
static inline rd_kafka_resp_err_t dreamsr_rdk_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                                                      const void *payload, size_t len,
                                                      const void *key, size_t keylen,
                                                      rd_kafka_headers_t *headers, void *opaque) {
    if (headers) {
        return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_VALUE((void *)payload, len), RD_KAFKA_V_KEY(key, keylen),
                                 RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    }
    return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_VALUE((void *)payload, len), RD_KAFKA_V_KEY(key, keylen),
                             RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
}

#endif
