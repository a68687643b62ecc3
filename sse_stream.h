/* sse_stream.h - the "sse-stream" content handler. */
#ifndef SSE_STREAM_H
#define SSE_STREAM_H

void sse_stream_register_hooks(void);

#endif /* SSE_STREAM_H */
