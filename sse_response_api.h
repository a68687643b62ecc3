/* sse_response_api.h - registers the stream API declared in mod_sse.h. */
#ifndef SSE_RESPONSE_API_H
#define SSE_RESPONSE_API_H

void sse_response_api_register(void);

#endif /* SSE_RESPONSE_API_H */
