/* sse_report.h - mod_sse's figures for operators: a section of mod_status's
 * server-status page and the Prometheus metrics of the admin API. */
#ifndef SSE_REPORT_H
#define SSE_REPORT_H

#include "httpd.h"

struct sse_store;

/* How many of the busiest channels the metrics list by name: enough for a
 * dashboard, few enough that a server with a million channels does not
 * answer a scrape with a million series. */
#define SSE_METRICS_TOP_CHANNELS 20

/* Answers GET <admin>/metrics in the Prometheus text exposition format. */
int sse_report_metrics(request_rec *r, struct sse_store *st);

void sse_report_register_hooks(void);

#endif /* SSE_REPORT_H */
