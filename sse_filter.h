/* sse_filter.h - the "SSE" output filter: a content generator's output as
 * an event stream. */
#ifndef SSE_FILTER_H
#define SSE_FILTER_H

void sse_filter_register_hooks(void);

#endif /* SSE_FILTER_H */
