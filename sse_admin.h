/* sse_admin.h - the "sse-admin" content handler (publish, inspect, delete). */
#ifndef SSE_ADMIN_H
#define SSE_ADMIN_H

void sse_admin_register_hooks(void);

#endif /* SSE_ADMIN_H */
