/* sse_location.h - which <Location> made a request one of mod_sse's, the
 * path below that section, and the per-request state mod_sse keeps.
 */
#ifndef SSE_LOCATION_H
#define SSE_LOCATION_H

#include "httpd.h"

#define SSE_HANDLER_STREAM "sse-stream"
#define SSE_HANDLER_ADMIN  "sse-admin"

/* The <Location> or <LocationMatch> whose own SetHandler names an sse
 * handler, the last such section of those that match, as httpd merges
 * them. */
typedef struct {
    const char *handler;   /* SSE_HANDLER_STREAM, SSE_HANDLER_ADMIN, or
                              NULL when no section of ours matches */
    const char *base;      /* URI prefix the section matched, without a
                              trailing slash: "/events" */
    const char *rest;      /* the path below it, leading slashes dropped */
} sse_location;

/* Per request (request_config). */
typedef struct {
    const char *located_uri;   /* r->uri that loc was computed for */
    sse_location loc;
    const char *virtual_uri;   /* noted at translate_name: no directory
                                  walk while r->uri stays this */
    const char *query_token;   /* ?authorization= value, kept out of logs */
} sse_request_state;

sse_request_state *sse_request_state_get(request_rec *r);

/* The section of r->uri, computed once per URI. */
const sse_location *sse_location_of(request_rec *r);

/* OK when r->handler (one of ours) was set by a section of ours and the
 * URL names channels and admin paths unambiguously. Else the status to
 * refuse with and *why: 500 when the handler was set elsewhere (the sse
 * handlers are honoured only in <Location>/<LocationMatch> of the server
 * configuration), 400 for an empty path segment. */
int sse_location_check(request_rec *r, const char **why);

void sse_location_register_hooks(void);

#endif /* SSE_LOCATION_H */
