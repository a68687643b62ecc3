/* sse_request.h - what a stream request asks for: its channels, checked
 * against httpd's access rules and a token's grants, its last event id and
 * its client's address.
 */
#ifndef SSE_REQUEST_H
#define SSE_REQUEST_H

#include "httpd.h"
#include "apr_tables.h"

typedef struct {
    apr_array_header_t *names;     /* channel names (const char *) */
    const char *last_id;           /* Last-Event-ID or ?lastEventId=; NULL */
    const unsigned char *client;   /* 16-byte address (IPv4 mapped), or
                                      NULL when it cannot be read */
    unsigned char client_buf[16];
} sse_stream_request;

/* Fills *req. Returns OK; DONE when a text answer was written (400, bad
 * names or query); or an HTTP status for httpd to answer (401 and 403:
 * the access rules of a channel's URL, a missing or invalid token, a
 * channel the token does not grant, a bad SSEChannel expression). */
int sse_request_resolve(request_rec *r, sse_stream_request *req);

/* The client's address as the per-client limit counts it (IPv4 mapped
 * into IPv6) in buf (16 bytes); NULL when it cannot be read. */
const unsigned char *sse_request_client_address(request_rec *r,
                                                unsigned char *buf);

/* Answers status with msg as text/plain (logged at debug); returns DONE. */
int sse_request_refuse(request_rec *r, int status, const char *msg);

#endif /* SSE_REQUEST_H */
