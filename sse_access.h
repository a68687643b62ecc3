/* sse_access.h - who may use a stream or the admin API beyond the
 * location's own Require: per-channel authorization, browser origins
 * (CORS, cross-site and DNS-rebinding refusals) and where a token comes
 * from.
 */
#ifndef SSE_ACCESS_H
#define SSE_ACCESS_H

#include "httpd.h"
#include "apr_tables.h"

/* Runs httpd's own access control (Require, Auth*, <Location>,
 * <LocationMatch>, <If>) for <base>/<channel> of every name, as if that URL
 * had been requested. Returns OK, or the status httpd gave the first URL it
 * refused (401 comes with its challenge); *refused then names the channel.
 * One subrequest per distinct channel; the request's own URL is not asked
 * again. */
int sse_access_check_channels(request_rec *r, const char *base,
                              const apr_array_header_t *names,
                              const char **refused);

/* Adds Access-Control-Allow-* headers when the request's Origin is listed
 * in SSECorsOrigins. */
void sse_access_cors_headers(request_rec *r);

/* Admin API: NULL when the request may come from where it comes from; else
 * why not (403). Refuses another site's page (Origin, Sec-Fetch-Site)
 * unless its origin is listed in SSECorsOrigins, and a Host that is not a
 * name of this server (DNS rebinding). Clients that send neither Origin nor
 * Sec-Fetch-Site (curl, app servers) pass. */
const char *sse_access_admin_origin(request_rec *r);

/* The request's token: "Authorization: Bearer", else the cookie named
 * cookie_name, else the "authorization" query parameter (taken out of
 * the request line and query before anything logs them). NULL if none. */
const char *sse_access_token(request_rec *r, const char *cookie_name);

struct sse_jwt_claims;

/* For a location with SSETokenKey: verifies the request's token and fills
 * *claims; its subject becomes r->user when no one is logged in yet.
 * Returns OK, DECLINED when the location takes no tokens, or 401 (with a
 * Bearer challenge; the reason, never the token, goes to the error log). */
int sse_access_token_claims(request_rec *r, struct sse_jwt_claims *claims);

/* Non-zero when the patterns of a token claim (sse_subscribe,
 * sse_publish) cover channel; with channel NULL, when they cover every
 * channel ("*"). */
int sse_access_token_grants(const apr_array_header_t *patterns,
                            const char *channel);

void sse_access_register_hooks(void);

#endif /* SSE_ACCESS_H */
