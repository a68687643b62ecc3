/* sse_private.h - declarations shared by every mod_sse unit that talks to
 * httpd: the module record, log tags, and the process-wide state of a child.
 */
#ifndef SSE_PRIVATE_H
#define SSE_PRIVATE_H

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"

extern module AP_MODULE_DECLARE_DATA sse_module;
/* mod_sse.c declares the module, which already does this */
#ifndef SSE_DECLARES_MODULE
APLOG_USE_MODULE(sse);
#endif

/* AHnnnnn tags belong to httpd; mod_sse numbers its own. Never reuse one. */
#define SSE_LOGNO(n) "SSE" #n ": "

struct sse_store;

/* The store this process uses, or NULL when initialisation failed.
 * Set in post_config (parent) and inherited by children. */
struct sse_store *sse_current_store(void);

/* The row of this child in the store's per-child table, or -1. */
int sse_child_row(void);

#endif /* SSE_PRIVATE_H */
