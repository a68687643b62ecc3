/* sse_location.c - which <Location> made a request an sse-stream or
 * sse-admin request, and the path below it.
 *
 * httpd merges every matching <Location> into one configuration, which
 * forgets the section that set the handler. Taking the innermost section
 * instead moves the path base under a nested <Location /sse-admin/status>
 * (so POST /sse-admin/status/channels/x published, past the outer Require)
 * or an <If>. So this walks the same sections as ap_location_walk, in the
 * same order and with the same matching rules, and keeps the last one whose
 * own SetHandler names an sse handler: that section is the base of channel
 * names and admin paths, whatever other sections add access rules below it.
 *
 * A handler set anywhere else (.htaccess, <Directory>, <Files>, an <If>) is
 * refused: .htaccess would let any user who may set handlers open an admin
 * API or a channel namespace outside the server's own access rules.
 *
 * Streams and the admin API are not files, so such requests skip the
 * directory walk (no stat of the URI, no .htaccess), as mod_proxy does. That
 * decision is taken at translate_name and holds only while r->uri stays the
 * same: a RewriteRule [PT] to another URL gets that URL's full walk.
 */
#include "apr_strings.h"
#include "apr_fnmatch.h"
#include "http_core.h"
#include "http_request.h"

#include "sse_private.h"
#include "sse_location.h"

sse_request_state *sse_request_state_get(request_rec *r)
{
    sse_request_state *st = ap_get_module_config(r->request_config,
                                                 &sse_module);
    if (!st) {
        st = apr_pcalloc(r->pool, sizeof(*st));
        ap_set_module_config(r->request_config, &sse_module, st);
    }
    return st;
}

/* The handler a section's own SetHandler names, NULL if it sets none. */
static const char *section_handler(request_rec *r, core_dir_config *sec)
{
    const char *err = NULL, *name;
    if (!sec->expr_handler) return NULL;
    name = ap_expr_str_exec(r, sec->expr_handler, &err);
    return err ? NULL : name;
}

static int is_sse_handler(const char *name)
{
    return name && (!strcmp(name, SSE_HANDLER_STREAM)
                    || !strcmp(name, SSE_HANDLER_ADMIN));
}

/* Matches like ap_location_walk: regexes against r->uri as is, prefixes
 * against the URI with merged slashes. Sets *matched_len to the length of
 * the matched part of *subject. */
static int section_matches(request_rec *r, core_dir_config *sec,
                           const char *merged, const char **subject,
                           apr_size_t *matched_len)
{
    apr_size_t len;
    if (sec->r) {
        ap_regmatch_t m[1];
        if (ap_regexec(sec->r, r->uri, 1, m, 0) || m[0].rm_eo < 0) {
            return 0;
        }
        *subject = r->uri;
        *matched_len = (apr_size_t)m[0].rm_eo;
        return 1;
    }
    *subject = merged;
    if (sec->d_is_fnmatch) {
        if (apr_fnmatch(sec->d, merged, APR_FNM_PATHNAME)) return 0;
        *matched_len = strlen(merged);
        return 1;
    }
    len = strlen(sec->d);
    if (strncmp(sec->d, merged, len)
        || (len > 0 && sec->d[len - 1] != '/' && merged[len] != '/'
            && merged[len] != '\0')) {
        return 0;
    }
    *matched_len = len;
    return 1;
}

static void locate(request_rec *r, sse_location *loc)
{
    core_server_config *sconf = ap_get_core_module_config(
                                    r->server->module_config);
    ap_conf_vector_t **sections = (ap_conf_vector_t **)sconf->sec_url->elts;
    char *merged = apr_pstrdup(r->pool, r->uri);
    const char *subject = NULL, *rest;
    apr_size_t matched = 0, n;
    int i;

    memset(loc, 0, sizeof(*loc));
    ap_no2slash(merged);
    for (i = 0; i < sconf->sec_url->nelts; i++) {
        core_dir_config *sec = ap_get_core_module_config(sections[i]);
        const char *handler, *s;
        apr_size_t len;
        if (!section_matches(r, sec, merged, &s, &len)) continue;
        if (!(handler = section_handler(r, sec))) continue;
        /* a later SetHandler overrides an earlier one, ours or not */
        loc->handler = is_sse_handler(handler) ? handler : NULL;
        subject = s;
        matched = len;
    }
    if (!loc->handler) return;
    n = matched;
    while (n > 0 && subject[n - 1] == '/') n--;
    loc->base = apr_pstrmemdup(r->pool, subject, n);
    rest = subject + matched;
    while (*rest == '/') rest++;
    loc->rest = rest;
}

const sse_location *sse_location_of(request_rec *r)
{
    sse_request_state *st = sse_request_state_get(r);
    if (!st->located_uri || strcmp(st->located_uri, r->uri)) {
        locate(r, &st->loc);
        st->located_uri = apr_pstrdup(r->pool, r->uri);
    }
    return &st->loc;
}

int sse_location_check(request_rec *r, const char **why)
{
    const sse_location *loc = sse_location_of(r);
    if (!loc->handler || strcmp(loc->handler, r->handler)) {
        *why = apr_psprintf(r->pool, "SetHandler %s is honoured only in a "
                            "<Location> or <LocationMatch> section of the "
                            "server configuration (not in .htaccess, "
                            "<Directory>, <Files> or <If>)", r->handler);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /* With MergeSlashes Off, <LocationMatch> sees "//" while <Location>
     * and httpd's walk cache see "/": the same channel URL would then be
     * judged by different rules depending on how it was spelt. */
    if (strstr(r->uri, "//")) {
        *why = "empty path segment (//) in the URL";
        return HTTP_BAD_REQUEST;
    }
    return OK;
}

static int note_virtual(request_rec *r)
{
    if (sse_location_of(r)->handler) {
        sse_request_state_get(r)->virtual_uri = apr_pstrdup(r->pool, r->uri);
    }
    return DECLINED;
}

static int skip_directory_walk(request_rec *r)
{
    sse_request_state *st = ap_get_module_config(r->request_config,
                                                 &sse_module);
    /* a translate_name hook that changed r->uri after ours (mod_rewrite
     * [PT]) sends the request elsewhere: that URL gets its full walk */
    if (st && st->virtual_uri && !strcmp(st->virtual_uri, r->uri)) {
        return OK;
    }
    return DECLINED;
}

void sse_location_register_hooks(void)
{
    ap_hook_translate_name(note_virtual, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_map_to_storage(skip_directory_walk, NULL, NULL, APR_HOOK_FIRST);
}
