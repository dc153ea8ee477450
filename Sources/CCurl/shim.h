#ifndef DREAMSR_CCURL_SHIM_H
#define DREAMSR_CCURL_SHIM_H
#include <curl/curl.h>

/*
 * Swift cannot call variadic C functions (curl_easy_setopt, curl_easy_getinfo): these non-variadic inline
 * wrappers pass one typed argument each. Callbacks are passed as typed function pointers.
 */
static inline CURLcode dreamsr_curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode dreamsr_curl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode dreamsr_curl_setopt_str(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode dreamsr_curl_setopt_ptr(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode dreamsr_curl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) {
    return curl_easy_setopt(h, o, v);
}

typedef size_t (*dreamsr_curl_write_cb)(char *data, size_t size, size_t nmemb, void *userdata);
typedef curl_socket_t (*dreamsr_curl_opensocket_cb)(void *userdata, curlsocktype purpose, struct curl_sockaddr *address);
typedef int (*dreamsr_curl_xferinfo_cb)(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                                        curl_off_t ulnow);

static inline CURLcode dreamsr_curl_set_write(CURL *h, dreamsr_curl_write_cb cb, void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cb);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_WRITEDATA, userdata);
}

static inline CURLcode dreamsr_curl_set_opensocket(CURL *h, dreamsr_curl_opensocket_cb cb, void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, cb);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, userdata);
}

static inline CURLcode dreamsr_curl_set_xferinfo(CURL *h, dreamsr_curl_xferinfo_cb cb, void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, cb);
    if (rc == CURLE_OK) rc = curl_easy_setopt(h, CURLOPT_XFERINFODATA, userdata);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
}

/* CURLOPT_READFUNCTION (request bodies) and CURLOPT_HEADERFUNCTION (response headers): same signature as write. */
static inline CURLcode dreamsr_curl_set_read(CURL *h, dreamsr_curl_write_cb cb, void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_READFUNCTION, cb);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_READDATA, userdata);
}

static inline CURLcode dreamsr_curl_set_header(CURL *h, dreamsr_curl_write_cb cb, void *userdata) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, cb);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_HEADERDATA, userdata);
}

static inline CURLcode dreamsr_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode dreamsr_curl_getinfo_str(CURL *h, CURLINFO i, char **v) { return curl_easy_getinfo(h, i, v); }

/* The socket curl would have opened itself. */
static inline curl_socket_t dreamsr_curl_open(const struct curl_sockaddr *a) {
    return socket(a->family, a->socktype, a->protocol);
}

#endif
